// Raft messages through the peer wire format: any message survives the round
// trip exactly (property), many groups share one frame, and malformed frames
// are refused with PeerProtocolError, never handed to the Raft core.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as capnp from "capnp-es";
import fc from "fast-check";
import {
  decodePeerFrame,
  encodeHello,
  encodeLeaving,
  encodePublish,
  encodeRaftBatch,
  encodeRaftFrames,
  type GroupMessage,
  PeerProtocolError,
  SMALL_RECORD_BYTES,
} from "../../src/cluster/peer-codec.js";
import { PEER_FRAME_TARGET_BYTES, PEER_MAX_MESSAGES_PER_FRAME } from "../../src/limits.js";
import { PeerFrame } from "../../src/protocol/gen/piccolo.js";
import { type Message, MessageType, message } from "../../src/raft/messages.js";
import { EntryType } from "../../src/raft/types.js";

const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const id = fc.integer({ min: 0, max: 64 });
const entry = fc.record({
  index: u53,
  term: u53,
  type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange, EntryType.Noop),
  data: fc.uint8Array({ maxLength: 64 }),
});
const msgArb: fc.Arbitrary<GroupMessage> = fc
  .record({
    group: fc.integer({ min: 0, max: 4095 }),
    type: fc.constantFrom(...(Object.values(MessageType) as Message["type"][])),
    from: id,
    to: id,
    term: u53,
    logTerm: u53,
    index: u53,
    entries: fc.array(entry, { maxLength: 4 }),
    commit: u53,
    reject: fc.boolean(),
    rejectHint: u53,
    context: u53,
    transfer: fc.boolean(),
    quiesce: fc.boolean(),
    handoff: fc.boolean(),
    snap: fc.record({
      index: u53,
      term: u53,
      voters: fc.array(id, { maxLength: 5 }),
      learners: fc.array(id, { maxLength: 3 }),
      data: fc.uint8Array({ maxLength: 100 }),
    }),
  })
  .map(({ group, snap, ...m }) => ({
    group,
    message: {
      ...m,
      entries: m.entries.map((e) => ({ ...e })), // fast-check's records have no prototype; decoded ones do
      snapshot:
        m.type === MessageType.Snap
          ? {
              meta: { index: snap.index, term: snap.term, voters: snap.voters, learners: snap.learners },
              data: snap.data,
            }
          : null,
    },
  }));

const buf = (u: Uint8Array) => u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;

/** Every message of a sequence of Raft frames, decoded in the order a peer reads them. */
const decodeAll = (frames: Uint8Array[]) =>
  frames.flatMap((f) => {
    const d = decodePeerFrame(buf(f));
    assert.equal(d.kind, "raft");
    return d.kind === "raft" ? d.messages : [];
  });

describe("peer codec", () => {
  it("any batch of Raft messages round-trips exactly (property): small ones, appends, snapshots, each kind in order", () => {
    // A stopping leader's hand-off travels as a struct, as a snapshot does (the codec's comment says why).
    const small = (g: { message: Message }) =>
      g.message.entries.length === 0 && g.message.snapshot === null && !g.message.handoff;
    const append = (g: { message: Message }) =>
      g.message.entries.length > 0 && g.message.snapshot === null && !g.message.handoff;
    fc.assert(
      fc.property(fc.array(msgArb, { maxLength: 20 }), (batch) => {
        const back = decodePeerFrame(buf(encodeRaftBatch(batch)));
        assert.equal(back.kind, "raft");
        if (back.kind === "raft")
          assert.deepEqual(back.messages, [
            ...batch.filter(small),
            ...batch.filter(append),
            ...batch.filter((g) => !small(g) && !append(g)),
          ]);
      }),
      { numRuns: 300, seed: 42 },
    );
  });

  it("a batch of any size leaves as frames within the limits, in order (a member never refuses its own traffic)", () => {
    // The batch that once stopped a restarted member: thousands of heartbeat answers for one peer.
    const answers: GroupMessage[] = Array.from({ length: 9_511 }, (_, i) => ({
      group: i % 32,
      message: message({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: 3, context: i }),
    }));
    const frames = encodeRaftFrames(answers);
    assert.equal(frames.length, Math.ceil(9_511 / PEER_MAX_MESSAGES_PER_FRAME));
    assert.deepEqual(decodeAll(frames), answers);
    // Catch-up: 64 appends of ~1 MiB each; frames stay near the byte target, none has two past it.
    const mib = new Uint8Array(1024 * 1024 - 200);
    const appends: GroupMessage[] = Array.from({ length: 64 }, (_, i) => ({
      group: i,
      message: message({
        type: MessageType.App,
        from: 1,
        to: 2,
        term: 3,
        index: 10,
        entries: [{ index: 11, term: 3, type: EntryType.Normal, data: mib }],
      }),
    }));
    const big = encodeRaftFrames(appends);
    assert.ok(big.length >= 64 / Math.floor(PEER_FRAME_TARGET_BYTES / (1024 * 1024)), `${big.length} frames`);
    for (const f of big) assert.ok(f.length <= PEER_FRAME_TARGET_BYTES + 4096, `a frame of ${f.length} bytes`);
    assert.deepEqual(
      decodeAll(big).map((g) => g.group),
      appends.map((g) => g.group),
    );
    // A single message bigger than the target travels alone; an empty batch is one empty frame (a ping).
    const huge = {
      ...appends[0]!,
      message: {
        ...appends[0]!.message,
        entries: [{ index: 11, term: 3, type: EntryType.Normal, data: new Uint8Array(PEER_FRAME_TARGET_BYTES * 2) }],
      },
    };
    assert.equal(encodeRaftFrames([appends[1]!, huge, appends[2]!]).length, 3);
    assert.deepEqual(decodeAll(encodeRaftFrames([])), []);
  });

  it("each group's messages arrive in the order sent, whatever the batch mixes (property; decision 0109)", () => {
    const byGroup = (ms: GroupMessage[]) => {
      const m = new Map<number, Message[]>();
      for (const g of ms) m.set(g.group, [...(m.get(g.group) ?? []), g.message]);
      return m;
    };
    // Few groups, so a group's small messages, appends and structs follow each other in every order.
    const few = msgArb.chain((m) => fc.integer({ min: 0, max: 3 }).map((group) => ({ ...m, group })));
    fc.assert(
      fc.property(fc.array(few, { maxLength: 30 }), (batch) => {
        const back = decodeAll(encodeRaftFrames(batch));
        assert.equal(back.length, batch.length);
        assert.deepEqual(byGroup(back), byGroup(batch));
      }),
      { numRuns: 300, seed: 7 },
    );
    // What went wrong under load: a leader's append with entries, then its empty append (the commit
    // index moved) in the same round. Read back in one frame, the empty one came first, found a gap
    // in the follower's log and was rejected. Now the empty one goes in a second frame.
    const app = (index: number, n: number): GroupMessage => ({
      group: 5,
      message: message({
        type: MessageType.App,
        from: 1,
        to: 2,
        term: 2,
        index,
        commit: index,
        entries: Array.from({ length: n }, (_, i) => ({
          index: index + 1 + i,
          term: 2,
          type: EntryType.Normal,
          data: new Uint8Array(8),
        })),
      }),
    });
    const other: GroupMessage = {
      group: 6,
      message: message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 2 }),
    };
    const round = [app(10, 3), other, app(13, 0)];
    const frames = encodeRaftFrames(round);
    assert.equal(frames.length, 2);
    assert.deepEqual(
      decodeAll(frames).map((g) => [g.group, g.message.index]),
      [
        [6, 0],
        [5, 10],
        [5, 13],
      ],
    );
    // Without such a pair, one frame as before.
    assert.equal(encodeRaftFrames([other, app(10, 3), app(13, 2)]).length, 1);
  });

  it("small messages travel as records; a malformed record closes nothing but is refused", () => {
    const hb = message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 7, commit: 40, context: 3 });
    const frame = encodeRaftBatch([{ group: 5, message: hb }]);
    // One 64-byte record, not a capnp struct per message: the frame is small.
    assert.ok(frame.length < 140, `${frame.length} bytes`);
    assert.deepEqual(decodePeerFrame(buf(frame)), { kind: "raft", messages: [{ group: 5, message: hb }] });
    // Corrupt the record's type byte, flags, and a term that is not an integer.
    const at = frame.length - SMALL_RECORD_BYTES;
    for (const [offset, poke] of [
      [4, (v: DataView) => v.setUint8(at + 4, 99)],
      [5, (v: DataView) => v.setUint8(at + 5, 9)],
      [16, (v: DataView) => v.setFloat64(at + 16, 1.5, true)],
      [16, (v: DataView) => v.setFloat64(at + 16, -1, true)],
    ] as const) {
      const bad = frame.slice();
      poke(new DataView(bad.buffer));
      assert.throws(() => decodePeerFrame(buf(bad)), PeerProtocolError, `byte ${offset}`);
    }
  });

  it("appends travel as records with their entries; every malformed length or field is refused", () => {
    const app = message({
      type: MessageType.App,
      from: 1,
      to: 2,
      term: 3,
      logTerm: 3,
      index: 9,
      commit: 8,
      entries: [
        { index: 10, term: 3, type: EntryType.Normal, data: new Uint8Array([1, 2, 3]) },
        { index: 11, term: 3, type: EntryType.Noop, data: new Uint8Array(0) },
      ],
    });
    const frame = encodeRaftBatch([{ group: 7, message: app }]);
    // The header (64), the count (8), two entries of 24 bytes plus data padded to 8: 72 + 32 + 24.
    const bytes = 72 + 32 + 24;
    assert.deepEqual(decodePeerFrame(buf(frame)), { kind: "raft", messages: [{ group: 7, message: app }] });
    const at = frame.length - bytes; // the appends field is the frame's last object
    const first = at + 72;
    const view = new DataView(frame.buffer, frame.byteOffset);
    assert.equal(view.getUint32(at, true), 7, "the record starts where the test pokes");
    assert.equal(view.getUint32(at + 64, true), 2);
    assert.equal(view.getUint32(first + 16, true), 3);
    for (const [what, poke] of [
      ["a count of zero", (v: DataView) => v.setUint32(at + 64, 0, true)],
      ["a count past the bytes", (v: DataView) => v.setUint32(at + 64, 3, true)],
      ["a bad reserved word", (v: DataView) => v.setUint32(at + 68, 1, true)],
      ["an unknown entry type", (v: DataView) => v.setUint8(first + 20, 99)],
      ["bad entry padding", (v: DataView) => v.setUint8(first + 21, 1)],
      ["a data length past the frame", (v: DataView) => v.setUint32(first + 16, 1_000_000, true)],
      ["a fractional entry index", (v: DataView) => v.setFloat64(first, 10.5, true)],
      ["a Snap type without a snapshot", (v: DataView) => v.setUint8(at + 4, MessageType.Snap)],
    ] as const) {
      const bad = frame.slice();
      poke(new DataView(bad.buffer));
      assert.throws(() => decodePeerFrame(buf(bad)), PeerProtocolError, what);
    }
  });

  it("a batch without snapshots or hand-offs is laid out by hand, and is still a Cap'n Proto PeerFrame any reader decodes", () => {
    fc.assert(
      fc.property(fc.array(msgArb, { maxLength: 12 }), (batch) => {
        const plain = batch.filter((g) => g.message.snapshot === null && !g.message.handoff);
        const frame = encodeRaftBatch(plain);
        // capnp-es reads the hand-laid frame: the union says RAFT, and the two Data fields hold the records.
        const root = new capnp.Message(buf(frame), false).getRoot(PeerFrame);
        assert.equal(root.which(), PeerFrame.RAFT);
        assert.equal(root.raft.messages.length, 0);
        const small = root.raft.small.toUint8Array();
        const appends = root.raft.appends.toUint8Array();
        assert.equal(small.length, plain.filter((g) => g.message.entries.length === 0).length * SMALL_RECORD_BYTES);
        // The same fields written by capnp-es (its own layout, pointers elsewhere) decode to the same messages.
        const m = new capnp.Message();
        const b = m.initRoot(PeerFrame)._initRaft();
        if (small.length > 0) b._initSmall(small.length).copyBuffer(small);
        if (appends.length > 0) b._initAppends(appends.length).copyBuffer(appends);
        assert.deepEqual(decodePeerFrame(m.toArrayBuffer()), decodePeerFrame(buf(frame)));
        // And read in place from a view into a larger buffer (a ring record), not only from its own buffer.
        const ring = new Uint8Array(frame.length + 24);
        ring.set(frame, 12);
        assert.deepEqual(decodePeerFrame(ring.subarray(12, 12 + frame.length)), decodePeerFrame(buf(frame)));
      }),
      { numRuns: 200, seed: 7 },
    );
  });

  it("a hand-laid frame whose pointers lie is refused, not read out of bounds", () => {
    const hb = message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 7, commit: 40 });
    const frame = encodeRaftBatch([{ group: 5, message: hb }]);
    const v = new DataView(frame.buffer, frame.byteOffset);
    // Word 4 of the segment (byte 8 + 32) is the small field's pointer: claim 1 MB of bytes.
    assert.equal(v.getUint32(44, true), (64 << 3) | 2, "the test pokes the small field's pointer");
    const bad = frame.slice();
    new DataView(bad.buffer).setUint32(44, ((1 << 20) << 3) | 2, true);
    assert.throws(() => decodePeerFrame(buf(bad)), PeerProtocolError);
    // A segment table that disagrees with the frame's length.
    const short = frame.slice();
    new DataView(short.buffer).setUint32(4, 3, true);
    assert.throws(() => decodePeerFrame(buf(short)), PeerProtocolError);
  });

  it("hello carries the cluster id, the member, its name and its addresses", () => {
    assert.deepEqual(
      decodePeerFrame(buf(encodeHello(0xfedcba9876543210n, 3, "10.0.0.7:7700", "n3", "10.0.0.7:7713"))),
      {
        kind: "hello",
        clusterId: 0xfedcba9876543210n,
        member: 3,
        clientAddress: "10.0.0.7:7700",
        name: "n3",
        peerAddress: "10.0.0.7:7713",
        forgotten: [],
      },
    );
    const gone = [
      { id: 2, name: "n2" },
      { id: 5, name: "n5" },
    ];
    assert.deepEqual(
      (decodePeerFrame(buf(encodeHello(1n, 3, "", "n3", "h:1", gone))) as { forgotten: unknown }).forgotten,
      gone,
    );
    assert.throws(
      () => decodePeerFrame(buf(encodeHello(1n, 3, "", "n3", "h:1", [{ id: 0, name: "n0" }]))),
      PeerProtocolError,
    );
    assert.throws(
      () => decodePeerFrame(buf(encodeHello(1n, 3, "", "n3", "h:1", [{ id: 2, name: "" }]))),
      PeerProtocolError,
    );
    assert.throws(() => decodePeerFrame(buf(encodeHello(1n, 2, "", "bad name!", "h:1"))), PeerProtocolError);
    assert.equal((decodePeerFrame(buf(encodeHello(1n, 2))) as { clientAddress: string }).clientAddress, "");
    assert.throws(() => decodePeerFrame(buf(encodeHello(1n, 2, "no port here"))), PeerProtocolError);
    assert.throws(() => decodePeerFrame(buf(encodeHello(1n, 2, `${"h".repeat(400)}:1`))), PeerProtocolError);
  });

  it("a relayed PUBLISH carries its channel and message, byte for byte (empty ones too)", () => {
    const ch = new Uint8Array([0, 1, 255, 104, 105]);
    const msg = new Uint8Array(70_000).fill(7);
    assert.deepEqual(decodePeerFrame(buf(encodePublish(ch, msg))), { kind: "publish", channel: ch, message: msg });
    assert.deepEqual(decodePeerFrame(buf(encodePublish(new Uint8Array(0), new Uint8Array(0)))), {
      kind: "publish",
      channel: new Uint8Array(0),
      message: new Uint8Array(0),
    });
  });

  it("a stopping member's Leaving, and the answer to it, say which they are (decision 0298)", () => {
    assert.deepEqual(decodePeerFrame(buf(encodeLeaving(false))), { kind: "leaving", ack: false });
    assert.deepEqual(decodePeerFrame(buf(encodeLeaving(true))), { kind: "leaving", ack: true });
  });

  it("refuses malformed frames with PeerProtocolError", () => {
    const one = (m: Partial<Message>) => [{ group: 1, message: message({ type: 1, from: 1, to: 2, term: 1, ...m }) }];
    // A message type the core does not know.
    const m1 = new capnp.Message();
    m1.initRoot(PeerFrame)._initRaft()._initMessages(1).get(0).type = 99;
    assert.throws(() => decodePeerFrame(m1.toArrayBuffer()), PeerProtocolError);
    // A term past 2^53.
    const m2 = new capnp.Message();
    const r = m2.initRoot(PeerFrame)._initRaft()._initMessages(1).get(0);
    r.type = MessageType.App;
    r.term = 2n ** 60n;
    assert.throws(() => decodePeerFrame(m2.toArrayBuffer()), /past 2\^53/);
    // A Snap without a snapshot.
    assert.throws(() => decodePeerFrame(buf(encodeRaftBatch(one({ type: MessageType.Snap })))), /without a snapshot/);
    // Garbage content in a well-formed frame (frames reach the decoder through
    // src/protocol/framing.ts, which has already checked the segment table).
    const garbage = new Uint8Array(16);
    new DataView(garbage.buffer).setUint32(4, 1, true); // one segment of one word
    garbage.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 8);
    assert.throws(() => decodePeerFrame(garbage.buffer), PeerProtocolError);
    // Too many messages for one frame: the sender must split.
    assert.throws(() => encodeRaftBatch(new Array(5000).fill(one({})[0])), /limit/);
  });
});
