/**
 * Raft messages on the wire between nodes: src/raft/messages.ts's plain
 * objects <-> the schema's PeerFrame (schema/piccolo.capnp), one frame
 * carrying the messages of many groups.
 *
 * Decoding is strict: a frame from a peer is input like any other, and a
 * malformed one (an unknown message type, a number past 2^53, a snapshot on
 * a message that is not Snap) is refused with PeerProtocolError rather than
 * handed to the Raft core, whose invariants would then stop the process.
 */
import * as capnp from "capnp-es";
import { assert } from "../assert.js";
import { PEER_FRAME_TARGET_BYTES, PEER_MAX_MESSAGES_PER_FRAME } from "../limits.js";
import {
  isNullPointer,
  layoutRootAndChild,
  pointerAt,
  readData,
  readRootAndChild,
  rootStruct,
  singleSegment,
  writeDataPointer,
  writeStructPointer,
} from "../protocol/capnp-words.js";
import { PeerFrame, PeerFrame_Which, type RaftMessage } from "../protocol/gen/piccolo.js";
import { type Message, MessageType } from "../raft/messages.js";
import { type Entry, EntryType, type Snapshot } from "../raft/types.js";
import { type ForgottenMember, MAX_CLUSTER_MEMBERS } from "./placement.js";
import { PEER_NONCE_BYTES, PEER_PROOF_BYTES } from "../security/peer-auth.js";

export class PeerProtocolError extends Error {
  override name = "PeerProtocolError";
}

/** A Raft message and the group (partition) it belongs to. */
export interface GroupMessage {
  group: number;
  message: Message;
}

export interface ForwardRequest {
  id: number;
  group: number;
  write: boolean;
  command: Uint8Array;
}

export type ForwardOutcome =
  | { kind: "result"; result: Uint8Array }
  | { kind: "notLeader"; leader: number }
  | { kind: "failed"; reason: string };

export type DecodedFrame =
  | {
      kind: "hello";
      clusterId: bigint;
      member: number;
      clientAddress: string;
      name: string;
      peerAddress: string;
      /** Every member the sender has forgotten (`piccolo cluster forget`). */
      forgotten: ForgottenMember[];
    }
  | { kind: "raft"; messages: GroupMessage[] }
  | ({ kind: "forward" } & ForwardRequest)
  | { kind: "forwardReply"; id: number; outcome: ForwardOutcome }
  | { kind: "transfer"; group: number; to: number }
  | { kind: "replace"; group: number; remove: number; add: number }
  | { kind: "publish"; channel: Uint8Array; message: Uint8Array }
  /** A stopping member's "I am leaving" (ack false), or a peer's answer to it (ack true): schema's Leaving. */
  | { kind: "leaving"; ack: boolean };

/** "I am leaving" (ack false), or the answer to it (ack true); see Leaving in the schema. */
export function encodeLeaving(ack: boolean): Uint8Array {
  const m = new capnp.Message();
  m.initRoot(PeerFrame)._initLeaving().ack = ack;
  return frameOf(m);
}

/** A Redis PUBLISH for another member's subscribers. */
export function encodePublish(channel: Uint8Array, message: Uint8Array): Uint8Array {
  const m = new capnp.Message();
  const p = m.initRoot(PeerFrame)._initPublish();
  if (channel.length > 0) p._initChannel(channel.length).copyBuffer(channel);
  if (message.length > 0) p._initMessage(message.length).copyBuffer(message);
  return frameOf(m);
}

export function encodeTransfer(group: number, to: number): Uint8Array {
  const m = new capnp.Message();
  const t = m.initRoot(PeerFrame)._initTransfer();
  t.partition = group;
  t.member = to;
  return frameOf(m);
}

export function encodeReplace(group: number, remove: number, add: number): Uint8Array {
  const m = new capnp.Message();
  const t = m.initRoot(PeerFrame)._initReplace();
  t.partition = group;
  t.remove = remove;
  t.add = add;
  return frameOf(m);
}

export function encodeForward(f: ForwardRequest): Uint8Array {
  const m = new capnp.Message();
  const x = m.initRoot(PeerFrame)._initForward();
  x.id = BigInt(f.id);
  x.group = f.group;
  x.write = f.write;
  setData((n) => x._initCommand(n), f.command);
  return frameOf(m);
}

export function encodeForwardReply(id: number, o: ForwardOutcome): Uint8Array {
  const m = new capnp.Message();
  const x = m.initRoot(PeerFrame)._initForwardReply();
  x.id = BigInt(id);
  if (o.kind === "result") setData((n) => x._initResult(n), o.result);
  else if (o.kind === "notLeader") x.notLeader = o.leader;
  else x.failed = o.reason;
  return frameOf(m);
}

const MESSAGE_TYPES = new Set<number>(Object.values(MessageType));
const ENTRY_TYPES = new Set<number>(Object.values(EntryType));

function frameOf(m: capnp.Message): Uint8Array {
  return new Uint8Array(m.toArrayBuffer());
}

export function encodeHello(
  clusterId: bigint,
  member: number,
  clientAddress = "",
  name = "",
  peerAddress = "",
  forgotten: readonly ForgottenMember[] = [],
): Uint8Array {
  const m = new capnp.Message();
  const h = m.initRoot(PeerFrame)._initHello();
  h.clusterId = clusterId;
  h.member = member;
  h.clientAddress = clientAddress;
  h.name = name;
  h.peerAddress = peerAddress;
  if (forgotten.length > 0) {
    const list = h._initForgotten(forgotten.length);
    forgotten.forEach((f, i) => {
      const x = list.get(i);
      x.id = f.id;
      x.name = f.name;
    });
  }
  return frameOf(m);
}

/**
 * The authentication step's frames (src/cluster/peer-handshake.ts), the
 * first each side sends and the only ones read before it passes. They are
 * not PeerFrames: the connection's state says what comes next, so they need
 * no union, and a stranger's bytes never reach capnp-es before the step is
 * passed. Each is a single-segment Cap'n Proto message (so FrameReader cuts
 * and bounds it like any other) whose root struct has data words only:
 *
 *   word 0   u32 AUTH_MAGIC   u8 version (PEER_AUTH_VERSION)   u8 step   u8 flags   u8 zero
 *   challenge (step 1, 5 data words): words 1-4 the sender's nonce; flags bit 0: it holds a cluster secret
 *   proof     (step 2, 7 data words): word 1 u32 member, u32 zero; word 2 u64 cluster id; words 3-6 the HMAC
 *
 * A peer of an older version sends a PeerFrame hello instead (1 data word,
 * 1 pointer): decodeAuthFrame says so, so the log names the real problem.
 */
export const PEER_AUTH_VERSION = 1;
/** "auth", little-endian: a word no PeerFrame's root begins with (its first u16 is the union's tag, 0-6). */
const AUTH_MAGIC = 0x68747561;
const AUTH_CHALLENGE = 1;
const AUTH_PROOF = 2;
const CHALLENGE_DATA_WORDS = 1 + PEER_NONCE_BYTES / 8;
const PROOF_DATA_WORDS = 3 + PEER_PROOF_BYTES / 8;
/** Largest authentication frame: segment table (8 bytes), root pointer, the proof's data words (72 bytes). */
export const PEER_AUTH_FRAME_BYTES = 8 + 8 + PROOF_DATA_WORDS * 8;

export type AuthFrame =
  | { kind: "challenge"; nonce: Uint8Array; hasSecret: boolean }
  | { kind: "proof"; member: number; clusterId: bigint; proof: Uint8Array };

/** A zeroed single-segment message with a data-only root of `dataWords`; returns it and its data's byte offset. */
function authLayout(dataWords: number, step: number, flags: number): { out: Uint8Array; view: DataView; data: number } {
  const words = 1 + dataWords;
  const out = new Uint8Array(8 + words * 8);
  const view = new DataView(out.buffer);
  view.setUint32(4, words, true); // one segment of `words` words
  writeStructPointer({ view, start: 8, words }, 8, 1, dataWords, 0);
  const data = 16;
  view.setUint32(data, AUTH_MAGIC, true);
  view.setUint8(data + 4, PEER_AUTH_VERSION);
  view.setUint8(data + 5, step);
  view.setUint8(data + 6, flags);
  return { out, view, data };
}

export function encodeChallenge(nonce: Uint8Array, hasSecret: boolean): Uint8Array {
  assert(nonce.length === PEER_NONCE_BYTES, "a challenge carries a whole nonce");
  const { out, data } = authLayout(CHALLENGE_DATA_WORDS, AUTH_CHALLENGE, hasSecret ? 1 : 0);
  out.set(nonce, data + 8);
  return out;
}

export function encodeProof(member: number, clusterId: bigint, proof: Uint8Array): Uint8Array {
  assert(proof.length === PEER_PROOF_BYTES, "a proof is one whole HMAC");
  const { out, view, data } = authLayout(PROOF_DATA_WORDS, AUTH_PROOF, 0);
  view.setUint32(data + 8, member, true);
  view.setBigUint64(data + 16, BigInt.asUintN(64, clusterId), true);
  out.set(proof, data + 24);
  return out;
}

/** Decodes an authentication frame (see above); anything else is a PeerProtocolError saying what it was. */
export function decodeAuthFrame(frame: Uint8Array): AuthFrame {
  const s = singleSegment(frame);
  const root = s === null ? null : rootStruct(s);
  if (s === null || root === null) throw new PeerProtocolError("not an authentication frame");
  const v = s.view;
  if (root.pointers === 1 && root.dataWords === 1 && v.getUint16(root.data, true) === PeerFrame_Which.HELLO)
    throw new PeerProtocolError("a hello without the authentication step first (a member of an older version?)");
  if (root.pointers !== 0 || root.dataWords < 1 || v.getUint32(root.data, true) !== AUTH_MAGIC)
    throw new PeerProtocolError("not an authentication frame");
  const version = v.getUint8(root.data + 4);
  if (version !== PEER_AUTH_VERSION)
    throw new PeerProtocolError(
      `peer authentication version ${version}; this member speaks version ${PEER_AUTH_VERSION}`,
    );
  const step = v.getUint8(root.data + 5);
  const flags = v.getUint8(root.data + 6);
  if (v.getUint8(root.data + 7) !== 0) throw new PeerProtocolError("bad padding in an authentication frame");
  if (step === AUTH_CHALLENGE && root.dataWords === CHALLENGE_DATA_WORDS && flags <= 1)
    return {
      kind: "challenge",
      nonce: frame.slice(root.data + 8, root.data + 8 + PEER_NONCE_BYTES),
      hasSecret: flags === 1,
    };
  if (
    step === AUTH_PROOF &&
    root.dataWords === PROOF_DATA_WORDS &&
    flags === 0 &&
    v.getUint32(root.data + 12, true) === 0
  )
    return {
      kind: "proof",
      member: v.getUint32(root.data + 8, true),
      clusterId: v.getBigUint64(root.data + 16, true),
      proof: frame.slice(root.data + 24, root.data + 24 + PEER_PROOF_BYTES),
    };
  throw new PeerProtocolError(`a malformed authentication frame (step ${step}, ${root.dataWords} data words)`);
}

function setData(init: (n: number) => capnp.Data, b: Uint8Array): void {
  if (b.length > 0) init(b.length).copyBuffer(b);
}

/**
 * Raft messages travel as packed little-endian records, not one Cap'n Proto
 * struct each: capnp-es allocates several objects to read or write a struct,
 * and profiles showed that dominating first an idle member's CPU (heartbeats,
 * decision 0187), then a loaded one's (appends, decision 0191). Every message
 * starts with the same 64-byte header:
 *
 *   0 u32 group   4 u8 type   5 u8 flags (1: reject, 2: transfer, 4: quiesce)   6 u16 zero
 *   8 u32 from   12 u32 to   16 f64 term   24 f64 logTerm   32 f64 index
 *  40 f64 commit 48 f64 rejectHint 56 f64 context
 *
 * Indexes and terms are integers below 2^53, exact in a float64. Messages
 * without entries (heartbeats and their answers, acknowledgements, votes) are
 * that header alone, in the batch's `small` field. Messages with entries are
 * in `appends`: the header, then
 *
 *  64 u32 entry count (at least 1)   68 u32 zero
 *
 * and each entry, 8-byte aligned:
 *
 *   0 f64 index   8 f64 term   16 u32 data length   20 u8 type   21 three zero bytes
 *  24 data, then zero padding to a multiple of 8
 *
 * A message with a snapshot (rare, large) stays a Cap'n Proto struct in
 * `messages`, and so does a stopping leader's hand-off (a TimeoutNow with
 * `handoff`, rare too): a member of the build before that field reads the
 * struct without it (an ordinary transfer) where it would refuse an unknown
 * flag bit in a record.
 */
export const SMALL_RECORD_BYTES = 64;
const APPEND_HEADER_BYTES = SMALL_RECORD_BYTES + 8;
const ENTRY_HEADER_BYTES = 24;

const pad8 = (n: number): number => (n + 7) & ~7;

function isSmall(x: Message): boolean {
  return x.entries.length === 0 && x.snapshot === null && !x.handoff;
}

function isAppend(x: Message): boolean {
  return x.entries.length > 0 && x.snapshot === null && !x.handoff;
}

function writeHeader(v: DataView, at: number, group: number, x: Message): void {
  v.setUint32(at, group, true);
  v.setUint8(at + 4, x.type);
  v.setUint8(at + 5, (x.reject ? 1 : 0) | (x.transfer ? 2 : 0) | (x.quiesce ? 4 : 0));
  v.setUint16(at + 6, 0, true);
  v.setUint32(at + 8, x.from, true);
  v.setUint32(at + 12, x.to, true);
  v.setFloat64(at + 16, x.term, true);
  v.setFloat64(at + 24, x.logTerm, true);
  v.setFloat64(at + 32, x.index, true);
  v.setFloat64(at + 40, x.commit, true);
  v.setFloat64(at + 48, x.rejectHint, true);
  v.setFloat64(at + 56, x.context, true);
}

/** Writes the small field's records (see above) at byte `at`; returns where they end. */
function writeSmall(messages: readonly GroupMessage[], v: DataView, at: number): number {
  for (const { group, message: x } of messages) {
    if (!isSmall(x)) continue;
    writeHeader(v, at, group, x);
    at += SMALL_RECORD_BYTES;
  }
  return at;
}

/** Writes the appends field's records (see above) at byte `at` of `out`; returns where they end. */
function writeAppends(messages: readonly GroupMessage[], out: Uint8Array, v: DataView, at: number): number {
  for (const { group, message: x } of messages) {
    if (!isAppend(x)) continue;
    writeHeader(v, at, group, x);
    v.setUint32(at + SMALL_RECORD_BYTES, x.entries.length, true);
    v.setUint32(at + SMALL_RECORD_BYTES + 4, 0, true);
    at += APPEND_HEADER_BYTES;
    for (const e of x.entries) {
      v.setFloat64(at, e.index, true);
      v.setFloat64(at + 8, e.term, true);
      v.setUint32(at + 16, e.data.length, true);
      v.setUint32(at + 20, e.type, true); // type, then three zero bytes
      out.set(e.data, at + ENTRY_HEADER_BYTES);
      at = pad8(at + ENTRY_HEADER_BYTES + e.data.length); // `out` is fresh: the padding is zero already
    }
  }
  return at;
}

/**
 * A Raft batch without snapshots, laid out by hand as a single-segment Cap'n
 * Proto message (src/protocol/capnp-words.ts): any Cap'n Proto reader decodes
 * it as a PeerFrame; this one is simply laid out without capnp-es's objects.
 *
 *   word 0  root pointer -> PeerFrame (1 data word, 1 pointer) at word 1
 *   word 1  PeerFrame data: the union's discriminant, RAFT
 *   word 2  PeerFrame pointer 0 -> RaftBatch (0 data words, 3 pointers) at word 3
 *   word 3  messages: null      word 4  small -> word 6      word 5  appends -> after small
 *   word 6  the small records, then the append records (both whole words)
 */
function encodeSimpleBatch(messages: readonly GroupMessage[], small: number, appendBytes: number): Uint8Array {
  const smallBytes = small * SMALL_RECORD_BYTES;
  const { out, seg, root, childPtrs, tail } = layoutRootAndChild(1, 0, 3, smallBytes + appendBytes);
  seg.view.setUint16(root, PeerFrame_Which.RAFT, true);
  if (smallBytes > 0) writeDataPointer(seg, childPtrs + 8, tail, smallBytes);
  if (appendBytes > 0) writeDataPointer(seg, childPtrs + 16, tail + smallBytes / 8, appendBytes);
  const at = writeAppends(messages, out, seg.view, writeSmall(messages, seg.view, seg.start + tail * 8));
  assert(at === out.length, "a hand-laid Raft frame fills exactly the words counted for it");
  return out;
}

/** About how many bytes a message takes in a frame (exact for records; a snapshot's data plus its struct). */
function frameBytesOf(x: Message): number {
  if (isSmall(x)) return SMALL_RECORD_BYTES;
  let n = APPEND_HEADER_BYTES;
  for (const e of x.entries) n += pad8(ENTRY_HEADER_BYTES + e.data.length);
  if (x.snapshot !== null) n += x.snapshot.data.length + 8 * (x.snapshot.meta.voters.length + 32);
  return n;
}

/**
 * Where a message lands in a decoded frame: a frame is read back as its
 * small records, then its append records, then its Cap'n Proto structs
 * (decodeSimpleBatch, decodePeerFrame), not in the order it was written.
 */
const Section = { Small: 0, Appends: 1, Structs: 2 } as const;

function sectionOf(x: Message): number {
  return isSmall(x) ? Section.Small : isAppend(x) ? Section.Appends : Section.Structs;
}

/**
 * `messages` for one peer as frames, each group's messages arriving in the
 * order they were sent. One frame in the common case; several when a group's
 * messages would be read back out of order, or the batch has more than
 * PEER_MAX_MESSAGES_PER_FRAME messages or more than PEER_FRAME_TARGET_BYTES
 * of them (a round of catch-up after a restart or a pause: every group's
 * appends for a follower that fell behind). A sender never refuses its own
 * batch: legitimate traffic must never stop a member. An empty batch is one
 * empty frame (the keep-alive ping).
 *
 * The order. A frame is read back section by section (small records, then
 * appends, then structs), so a group's empty append (a commit update) sent
 * after one carrying entries would reach the follower first, find a gap in
 * its log and be rejected, and every rejection sends the leader back to
 * probing and resending (decision 0109: under a pipelined load this made
 * most of a cluster's traffic and its elections). Raft is safe under any
 * reordering; it is not efficient under this one. So each message goes to a
 * layer: a group's first message to layer 0, and each later one to the
 * layer of the group's previous message, or the next layer when its section
 * is read before the previous one's. Layer k's messages, in their original
 * order, make the k-th frame(s): within a layer every group's messages come
 * in section order, so they decode in the order sent. Different groups are
 * independent Raft groups; their relative order does not matter. In the
 * common case (no group has a small message after an append) everything is
 * layer 0 and the batch is encoded as it is.
 */
export function encodeRaftFrames(messages: readonly GroupMessage[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (const layer of orderedLayers(messages)) encodeBySize(layer, frames);
  return frames;
}

/** `messages` split into layers that each decode in each group's order (see encodeRaftFrames). */
function orderedLayers(messages: readonly GroupMessage[]): (readonly GroupMessage[])[] {
  if (messages.length < 2) return [messages];
  const last = new Map<number, number>(); // group -> layer * 4 + section of its last message
  let layers: GroupMessage[][] | null = null; // made only when a message needs a layer past the first
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const section = sectionOf(m.message);
    const prev = last.get(m.group);
    let layer = 0;
    if (prev !== undefined) layer = (prev >> 2) + (section < (prev & 3) ? 1 : 0);
    last.set(m.group, (layer << 2) | section);
    if (layer > 0 && layers === null) layers = [messages.slice(0, i)];
    if (layers !== null) {
      while (layers.length <= layer) layers.push([]);
      layers[layer]!.push(m);
    }
  }
  return layers ?? [messages];
}

/** Appends `messages` to `frames` as one frame, or several within the count and size targets. */
function encodeBySize(messages: readonly GroupMessage[], frames: Uint8Array[]): void {
  let from = 0;
  let bytes = 0;
  for (let i = 0; i < messages.length; i++) {
    const size = frameBytesOf(messages[i]!.message);
    if (i > from && (i - from === PEER_MAX_MESSAGES_PER_FRAME || bytes + size > PEER_FRAME_TARGET_BYTES)) {
      frames.push(encodeRaftBatch(messages.slice(from, i)));
      from = i;
      bytes = 0;
    }
    bytes += size;
  }
  frames.push(encodeRaftBatch(from === 0 ? messages : messages.slice(from)));
}

/**
 * One frame with all of `messages`. Throws when they are more than a frame
 * may hold: callers with a batch of any size use encodeRaftFrames.
 */
export function encodeRaftBatch(messages: readonly GroupMessage[]): Uint8Array {
  if (messages.length > PEER_MAX_MESSAGES_PER_FRAME)
    throw new PeerProtocolError(
      `${messages.length} messages in one frame; the limit is ${PEER_MAX_MESSAGES_PER_FRAME}`,
    );
  let small = 0;
  let appendBytes = 0;
  let snapshots = 0;
  for (const { message: x } of messages) {
    if (isSmall(x)) small++;
    else if (isAppend(x)) {
      appendBytes += APPEND_HEADER_BYTES;
      for (const e of x.entries) appendBytes += pad8(ENTRY_HEADER_BYTES + e.data.length);
    } else snapshots++;
  }
  if (snapshots === 0) return encodeSimpleBatch(messages, small, appendBytes);
  // A snapshot is a Cap'n Proto struct: capnp-es lays the whole frame out.
  const m = new capnp.Message();
  const batch = m.initRoot(PeerFrame)._initRaft();
  if (small > 0) {
    const bytes = new Uint8Array(small * SMALL_RECORD_BYTES);
    writeSmall(messages, new DataView(bytes.buffer), 0);
    batch._initSmall(bytes.length).copyBuffer(bytes);
  }
  if (appendBytes > 0) {
    const bytes = new Uint8Array(appendBytes);
    writeAppends(messages, bytes, new DataView(bytes.buffer), 0);
    batch._initAppends(appendBytes).copyBuffer(bytes);
  }
  const list = batch._initMessages(snapshots);
  let i = 0;
  for (const { group, message: x } of messages) {
    if (isSmall(x) || isAppend(x)) continue;
    const r = list.get(i++);
    r.group = group;
    r.type = x.type;
    r.from = x.from;
    r.to = x.to;
    r.term = BigInt(x.term);
    r.logTerm = BigInt(x.logTerm);
    r.index = BigInt(x.index);
    r.commit = BigInt(x.commit);
    r.reject = x.reject;
    r.rejectHint = BigInt(x.rejectHint);
    r.context = BigInt(x.context);
    r.transfer = x.transfer;
    r.quiesce = x.quiesce;
    r.handoff = x.handoff;
    if (x.entries.length > 0) {
      const es = r._initEntries(x.entries.length);
      x.entries.forEach((e, j) => {
        const w = es.get(j);
        w.index = BigInt(e.index);
        w.term = BigInt(e.term);
        w.type = e.type;
        setData((n) => w._initData(n), e.data);
      });
    }
    const snap = x.snapshot;
    if (snap === null) continue; // a hand-off: no snapshot
    const s = r._initSnapshot();
    s.index = BigInt(snap.meta.index);
    s.term = BigInt(snap.meta.term);
    const v = s._initVoters(snap.meta.voters.length);
    for (const [j, id] of snap.meta.voters.entries()) v.set(j, id);
    const l = s._initLearners(snap.meta.learners.length);
    for (const [j, id] of snap.meta.learners.entries()) l.set(j, id);
    setData((n) => s._initData(n), snap.data);
  }
  return frameOf(m);
}

/** A count or index from a record: a non-negative integer below 2^53. */
function whole(x: number, what: string): number {
  if (!Number.isSafeInteger(x) || x < 0) throw new PeerProtocolError(`${what} ${x} is not a valid number`);
  return x;
}

/** The message whose 64-byte header starts at `at`, with no entries yet. */
function readHeader(v: DataView, at: number): GroupMessage {
  const type = v.getUint8(at + 4);
  if (!MESSAGE_TYPES.has(type)) throw new PeerProtocolError(`unknown Raft message type ${type}`);
  if (type === MessageType.Snap) throw new PeerProtocolError("a Snap message without a snapshot");
  const flags = v.getUint8(at + 5);
  if (flags > 7 || v.getUint16(at + 6, true) !== 0) throw new PeerProtocolError("bad flags in a Raft record");
  return {
    group: v.getUint32(at, true),
    message: {
      type: type as Message["type"],
      from: v.getUint32(at + 8, true),
      to: v.getUint32(at + 12, true),
      term: whole(v.getFloat64(at + 16, true), "term"),
      logTerm: whole(v.getFloat64(at + 24, true), "logTerm"),
      index: whole(v.getFloat64(at + 32, true), "index"),
      entries: [],
      commit: whole(v.getFloat64(at + 40, true), "commit"),
      reject: (flags & 1) !== 0,
      rejectHint: whole(v.getFloat64(at + 48, true), "rejectHint"),
      context: whole(v.getFloat64(at + 56, true), "context"),
      snapshot: null,
      transfer: (flags & 2) !== 0,
      quiesce: (flags & 4) !== 0,
      handoff: false,
    },
  };
}

function decodeSmall(bytes: Uint8Array, out: GroupMessage[]): void {
  if (bytes.length % SMALL_RECORD_BYTES !== 0)
    throw new PeerProtocolError(`${bytes.length} bytes of small messages is not a whole number of records`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < bytes.length; at += SMALL_RECORD_BYTES) out.push(readHeader(v, at));
}

/** Decodes the appends field (see encodeAppends); every length is checked against what is left. */
function decodeAppends(bytes: Uint8Array, out: GroupMessage[]): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < APPEND_HEADER_BYTES) throw new PeerProtocolError("a truncated append record");
    if (out.length >= PEER_MAX_MESSAGES_PER_FRAME)
      throw new PeerProtocolError(`more than ${PEER_MAX_MESSAGES_PER_FRAME} messages in one frame`);
    const g = readHeader(v, at);
    const count = v.getUint32(at + SMALL_RECORD_BYTES, true);
    if (count === 0 || v.getUint32(at + SMALL_RECORD_BYTES + 4, true) !== 0)
      throw new PeerProtocolError("an append record with no entries or a bad count");
    at += APPEND_HEADER_BYTES;
    const entries = g.message.entries;
    for (let i = 0; i < count; i++) {
      if (bytes.length - at < ENTRY_HEADER_BYTES) throw new PeerProtocolError("a truncated entry");
      const length = v.getUint32(at + 16, true);
      const type = v.getUint8(at + 20);
      if (!ENTRY_TYPES.has(type)) throw new PeerProtocolError(`unknown entry type ${type}`);
      if (v.getUint8(at + 21) !== 0 || v.getUint16(at + 22, true) !== 0)
        throw new PeerProtocolError("bad padding in an entry");
      const size = pad8(ENTRY_HEADER_BYTES + length);
      if (bytes.length - at < size) throw new PeerProtocolError("an entry longer than its frame");
      entries.push({
        index: whole(v.getFloat64(at, true), "entry index"),
        term: whole(v.getFloat64(at + 8, true), "entry term"),
        type: type as Entry["type"],
        // A copy: the entry lives in the Raft log long after this frame is gone.
        data: bytes.slice(at + ENTRY_HEADER_BYTES, at + ENTRY_HEADER_BYTES + length),
      });
      at += size;
    }
    out.push(g);
  }
}

function num(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PeerProtocolError(`${what} ${v} is past 2^53`);
  return Number(v);
}

function decodeMessage(r: RaftMessage): GroupMessage {
  if (!MESSAGE_TYPES.has(r.type)) throw new PeerProtocolError(`unknown Raft message type ${r.type}`);
  const type = r.type as Message["type"];
  const entries: Entry[] = [];
  for (const e of r.entries) {
    if (!ENTRY_TYPES.has(e.type)) throw new PeerProtocolError(`unknown entry type ${e.type}`);
    entries.push({
      index: num(e.index, "entry index"),
      term: num(e.term, "entry term"),
      type: e.type as Entry["type"],
      data: e.data.toUint8Array().slice(),
    });
  }
  let snapshot: Snapshot | null = null;
  if (r._hasSnapshot()) {
    if (type !== MessageType.Snap) throw new PeerProtocolError(`a snapshot on a message of type ${type}`);
    const s = r.snapshot;
    snapshot = {
      meta: {
        index: num(s.index, "snapshot index"),
        term: num(s.term, "snapshot term"),
        voters: Array.from(s.voters),
        learners: Array.from(s.learners),
      },
      data: s.data.toUint8Array().slice(),
    };
  } else if (type === MessageType.Snap) throw new PeerProtocolError("a Snap message without a snapshot");
  return {
    group: r.group,
    message: {
      type,
      from: r.from,
      to: r.to,
      term: num(r.term, "term"),
      logTerm: num(r.logTerm, "logTerm"),
      index: num(r.index, "index"),
      entries,
      commit: num(r.commit, "commit"),
      reject: r.reject,
      rejectHint: num(r.rejectHint, "rejectHint"),
      context: num(r.context, "context"),
      snapshot,
      transfer: r.transfer,
      quiesce: r.quiesce,
      handoff: r.handoff,
    },
  };
}

/** A member name as in the member list, or empty when it did not say. */
/**
 * A hello's forgotten members: each a member id and a name. At most
 * MAX_CLUSTER_MEMBERS (ids are never reused, so there cannot be more).
 */
function checkedForgotten(list: { length: number; get(i: number): { id: number; name: string } }): ForgottenMember[] {
  if (list.length > MAX_CLUSTER_MEMBERS)
    throw new PeerProtocolError(`${list.length} forgotten members in a hello; at most ${MAX_CLUSTER_MEMBERS}`);
  const out: ForgottenMember[] = [];
  for (let i = 0; i < list.length; i++) {
    const f = list.get(i);
    if (f.id < 1 || f.id > MAX_CLUSTER_MEMBERS) throw new PeerProtocolError(`forgotten member id ${f.id}`);
    const name = checkedName(f.name);
    if (name === "") throw new PeerProtocolError("a forgotten member without a name");
    out.push({ id: f.id, name });
  }
  return out;
}

function checkedName(n: string): string {
  if (n === "" || /^[A-Za-z0-9_-]{1,64}$/.test(n)) return n;
  throw new PeerProtocolError(`"${n.slice(0, 64)}" is not a member name`);
}

/** A peer's address: host:port, bounded, or empty when it did not say. */
function checkedAddress(a: string): string {
  if (a === "") return a;
  if (a.length > 300 || !/^[^\s]+:\d{1,5}$/.test(a))
    throw new PeerProtocolError(`"${a.slice(0, 64)}" is not host:port`);
  return a;
}

/**
 * Whether a frame is a batch of Raft messages, reading only its kind: a
 * member whose groups all run on one worker hands such frames over whole,
 * and the worker decodes them (decodePeerFrame there). False for anything
 * undecodable, which then takes the full decoding path and its error.
 */
export function isRaftFrame(frame: ArrayBuffer): boolean {
  const u = readRootAndChild(new Uint8Array(frame), 1, 0);
  if (u !== null) return u.which === PeerFrame_Which.RAFT;
  try {
    return new capnp.Message(frame, false).getRoot(PeerFrame).which() === PeerFrame_Which.RAFT;
  } catch {
    return false;
  }
}

/**
 * A Raft batch without snapshots in a single segment, read without capnp-es
 * (the common case, and every frame encodeSimpleBatch writes); null for any
 * other frame or shape, which then takes capnp-es's path. The records are
 * checked exactly as on that path.
 */
function decodeSimpleBatch(bytes: Uint8Array): GroupMessage[] | null {
  const u = readRootAndChild(bytes, 1, 0);
  if (u === null || u.which !== PeerFrame_Which.RAFT) return null;
  const { s, child: batch } = u;
  if (batch === null || !isNullPointer(s, pointerAt(batch, 0))) return null;
  const small = readData(s, pointerAt(batch, 1));
  const appends = readData(s, pointerAt(batch, 2));
  if (small === null || appends === null) return null;
  if (small.length / SMALL_RECORD_BYTES > PEER_MAX_MESSAGES_PER_FRAME)
    throw new PeerProtocolError(`more than ${PEER_MAX_MESSAGES_PER_FRAME} messages in one frame`);
  const messages: GroupMessage[] = [];
  decodeSmall(small, messages);
  decodeAppends(appends, messages);
  return messages;
}

/**
 * Decodes one peer frame. Throws PeerProtocolError. The bytes must come from
 * src/protocol/framing.ts's FrameReader, which checks the segment table
 * against the size limits first: capnp-es itself can spend seconds on a
 * header claiming billions of segments.
 */
export function decodePeerFrame(frame: ArrayBuffer | Uint8Array): DecodedFrame {
  const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  const simple = decodeSimpleBatch(bytes);
  if (simple !== null) return { kind: "raft", messages: simple };
  let root: PeerFrame;
  try {
    const buffer = frame instanceof Uint8Array ? (frame.slice().buffer as ArrayBuffer) : frame;
    root = new capnp.Message(buffer, false).getRoot(PeerFrame);
    switch (root.which()) {
      case PeerFrame_Which.HELLO:
        return {
          kind: "hello",
          clusterId: root.hello.clusterId,
          member: root.hello.member,
          clientAddress: checkedAddress(root.hello.clientAddress),
          name: checkedName(root.hello.name),
          peerAddress: checkedAddress(root.hello.peerAddress),
          forgotten: checkedForgotten(root.hello.forgotten),
        };
      case PeerFrame_Which.RAFT: {
        const raft = root.raft;
        const list = raft.messages;
        const small = raft.small.toUint8Array();
        const count = list.length + small.length / SMALL_RECORD_BYTES;
        if (count > PEER_MAX_MESSAGES_PER_FRAME)
          throw new PeerProtocolError(`${count} messages in one frame; the limit is ${PEER_MAX_MESSAGES_PER_FRAME}`);
        const messages: GroupMessage[] = [];
        decodeSmall(small, messages);
        if (raft._hasAppends()) decodeAppends(raft.appends.toUint8Array(), messages);
        if (messages.length + list.length > PEER_MAX_MESSAGES_PER_FRAME)
          throw new PeerProtocolError(`more than ${PEER_MAX_MESSAGES_PER_FRAME} messages in one frame`);
        for (const r of list) messages.push(decodeMessage(r));
        return { kind: "raft", messages };
      }
      case PeerFrame_Which.FORWARD: {
        const f = root.forward;
        return {
          kind: "forward",
          id: num(f.id, "forward id"),
          group: f.group,
          write: f.write,
          command: f.command.toUint8Array().slice(),
        };
      }
      case PeerFrame_Which.FORWARD_REPLY: {
        const r = root.forwardReply;
        const id = num(r.id, "forward id");
        if (r._isResult)
          return { kind: "forwardReply", id, outcome: { kind: "result", result: r.result.toUint8Array().slice() } };
        if (r._isNotLeader) return { kind: "forwardReply", id, outcome: { kind: "notLeader", leader: r.notLeader } };
        return { kind: "forwardReply", id, outcome: { kind: "failed", reason: r.failed } };
      }
      case PeerFrame_Which.TRANSFER:
        return { kind: "transfer", group: root.transfer.partition, to: root.transfer.member };
      case PeerFrame_Which.REPLACE:
        return {
          kind: "replace",
          group: root.replace.partition,
          remove: root.replace.remove,
          add: root.replace.add,
        };
      case PeerFrame_Which.PUBLISH:
        return {
          kind: "publish",
          channel: root.publish.channel.toUint8Array().slice(),
          message: root.publish.message.toUint8Array().slice(),
        };
      case PeerFrame_Which.LEAVING:
        return { kind: "leaving", ack: root.leaving.ack };
      default:
        throw new PeerProtocolError(`unknown peer frame kind ${root.which()}`);
    }
  } catch (err) {
    if (err instanceof PeerProtocolError) throw err;
    throw new PeerProtocolError(`undecodable peer frame: ${(err as Error).message}`);
  }
}
