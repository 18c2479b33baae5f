/**
 * How long a request may wait, and where. Two deadlines depend on each other,
 * so they live together here, with their relation asserted at load:
 *
 *   client -> member A (CLUSTER_REQUEST_DEADLINE_MS: the request's whole life on A)
 *               | forward (when A does not lead the partition)
 *               v
 *             leader B (HOST_REQUEST_DEADLINE_MS: B's wait for the commit or the read index)
 *
 * A write B cannot commit in time is answered TIMEOUT by B ("possibly
 * applied"); a read it cannot confirm, UNAVAILABLE. B's deadline is shorter
 * than A's by FORWARD_ALLOWANCE_MS so that B's answer, even a failure, has
 * time to travel back to A before A gives up on it: then A reports what B
 * knows instead of an unknown outcome it would have to assume. Were B's
 * deadline the longer, every write whose commit is slow would reach its
 * client as "lost in forwarding", and a read A could still retry elsewhere
 * would be held past A's own deadline.
 *
 * A read forwarded to a leader that does not answer within
 * FORWARD_READ_RETRY_MS is tried again (a read is safe to send twice). A
 * forwarded write never is: it waits out A's deadline and answers TIMEOUT
 * (src/cluster/forwarder.ts).
 */
import { assert } from "../assert.js";
import { SHUTDOWN_RESP_ANSWER_MAX_MS } from "../limits.js";

/** Raft's clock on a member, by default (`--tick-ms`). */
export const CLUSTER_TICK_MS = 20;
/**
 * Ticks without a word from the leader before a follower campaigns, by
 * default (`--election-ticks`; randomised up to twice that): 1 to 2 s. Long
 * enough to ride out a living leader's stalls (measured up to 600 ms on a
 * loaded two-core machine running three members; decision 0110), where 200
 * to 400 ms made elections out of them. A leader whose connection closes is
 * replaced within a few ticks regardless (src/cluster/liveness.ts).
 */
export const CLUSTER_ELECTION_TICKS = 50;
/**
 * The election timeout until a replica has heard from a leader since it
 * started (at most --election-ticks): a fresh cluster, or one restarted
 * whole, elects its first leaders in 200 to 400 ms, with no lease to wait
 * out (src/raft/raft.ts, initialElectionTicks).
 */
export const FIRST_ELECTION_TICKS = 10;
/** A leader's heartbeat interval, in ticks. */
export const HEARTBEAT_TICKS = 2;

/** How long a request may wait on the member it reached: for a leader, a commit, or a forwarded answer. */
export const CLUSTER_REQUEST_DEADLINE_MS = 5_000;
/** How long a request served by a partition's leader may wait for its commit or read index. */
export const HOST_REQUEST_DEADLINE_MS = 4_500;
/** Time left for a leader's answer to travel back to the member that forwarded the request. */
export const FORWARD_ALLOWANCE_MS = 500;
/** How long a forwarded read waits for its answer before it is sent again (to whoever leads then). */
export const FORWARD_READ_RETRY_MS = 1_000;

assert(
  HOST_REQUEST_DEADLINE_MS + FORWARD_ALLOWANCE_MS <= CLUSTER_REQUEST_DEADLINE_MS,
  "a leader answers a forwarded request before the forwarding member's deadline",
);
assert(
  2 * CLUSTER_ELECTION_TICKS * CLUSTER_TICK_MS < HOST_REQUEST_DEADLINE_MS,
  "with the defaults, a write that waits out a leader's silence can still commit under the next one",
);
assert(HEARTBEAT_TICKS < FIRST_ELECTION_TICKS, "heartbeats come more often than elections");
assert(
  FORWARD_READ_RETRY_MS < CLUSTER_REQUEST_DEADLINE_MS,
  "a forwarded read that got no answer has time to be tried again",
);
assert(
  2 * CLUSTER_REQUEST_DEADLINE_MS < SHUTDOWN_RESP_ANSWER_MAX_MS,
  "a stopping member waits long enough for a two-step Redis command's answer",
);
