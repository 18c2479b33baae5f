/**
 * The network between members, as the cluster's host code sees it: frames
 * out to a member, frames in from one, and whether a member is reachable.
 *
 * In the node this is the TCP transport (src/cluster/transport.ts); in the
 * simulator (src/sim/kv-cluster.ts) a simulated network with the same
 * promises: frames between two members arrive in order and at most once
 * while their connection is up, and any frame may be dropped (a peer not
 * connected, a full send queue, a partition), which the sender is told only
 * when it happens at once (sendFrame returns false). The chaos harness's
 * fault injection is a decorator over this interface (src/chaos/peer-faults.ts),
 * installed only when a test asks for it: production code has no test branch.
 */
import type { DecodedFrame, GroupMessage } from "./peer-codec.js";
import type { ForgottenMember, Member } from "./placement.js";

/** A frame that is neither a hello (the transport's own) nor Raft traffic (the hosts'). */
export type PeerFrame = Exclude<DecodedFrame, { kind: "hello" | "raft" }>;

/** What a member sends through, and asks of, its network. */
export interface PeerNetwork {
  /** Queues one encoded frame for member `to`; false when it was dropped at once (not connected, queue full). */
  sendFrame(to: number, frame: Uint8Array): boolean;
  /** The connection to `peer` is up (a frame sent now leaves now, though it may still be lost). */
  isConnected(peer: number): boolean;
  /** A frame of any kind arrived from `peer` within the last `ms` (member liveness). */
  heardWithin(peer: number, ms: number): boolean;
  /** A frame was queued for `peer` within the last `ms` (keep-alive pings fill the silences). */
  sentWithin(peer: number, ms: number): boolean;
  /** `peer` sent a frame that did not decode (found out off this thread): drop its connection. */
  reject(peer: number, why: string): void;
  /**
   * Drops `peer` for good (`piccolo cluster forget`): never dialed again,
   * refused when it connects; on a live connection it is told first (a
   * last hello naming it), so a forgotten member still running stops.
   */
  forget(peer: number): void;
  /** Each peer's connection state and the client address it announced. */
  stats(): readonly { member: number; connected: boolean; clientAddress: string }[];
  start(): Promise<unknown>;
  stop(): Promise<void>;
}

/** What the network tells, and asks of, the member it serves. */
export interface PeerHandlers {
  /** A peer's Raft messages, decoded (an empty list is a keep-alive ping). */
  onMessages(from: number, messages: GroupMessage[]): void;
  /** When set, Raft frames arrive undecoded here instead (a group worker decodes them). */
  onRaftFrame?: (from: number, frame: Uint8Array) => void;
  /** Forwarded commands, their answers, and admin requests. */
  onFrame(from: number, frame: PeerFrame): void;
  /** A peer's connection went down: what was sent to it and not answered will not be. */
  onPeerDown(peer: number): void;
  /** A member that joined after bootstrap introduced itself: true keeps it (recorded durably). */
  onJoin(m: Member): boolean;
  /** The address this member's clients connect to, announced in every hello ("" until known). */
  clientAddress(): string;
  /** The members this one has forgotten: sent in every hello, and refused when they connect. */
  forgotten(): readonly ForgottenMember[];
  /** A peer's hello names a member this one has not forgotten: forget it too (recorded durably). */
  onForgotten(m: ForgottenMember, from: number): void;
  /** A peer's hello names this member as forgotten: it is no longer a member, and must stop. */
  onSelfForgotten(by: number, forgotten: readonly ForgottenMember[]): void;
}

/** Makes a member's network, given what the network should tell it. */
export type PeerNetworkFactory = (handlers: PeerHandlers) => PeerNetwork;
