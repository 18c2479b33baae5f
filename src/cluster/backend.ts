/**
 * Cluster mode's ShardBackend, the IO thread's half: the IO loop's dispatcher
 * sends shard commands here exactly as it does to local shards
 * (src/io/shards.ts), with one "shard" per partition, and gets the results
 * back. This file is the thin adapter between the two, and the node's
 * composition of a cluster member: it passes the real clock, the WAL, group
 * worker threads (or one inline host with `--shards 0`), the TCP peer
 * transport, and `process.exit` for a member that must stop. What a member
 * does is in src/cluster/member.ts and the files it names.
 */
import { join } from "node:path";
import type { TlsOptions } from "node:tls";
import { CLUSTER_MAX_IN_FLIGHT_BYTES } from "../limits.js";
import type { Logger } from "pino";
import { hash32 } from "../hash.js";
import type { ClusterInfo, ShardBackend, ShardEvents } from "../io/shards.js";
import { isLoopbackHost } from "../security/peer-auth.js";
import { type CommandFields, commandBytes, encodeCommand, Result } from "../shard/command.js";
import { StartError } from "../start-failure.js";
import { realClock } from "./clock.js";
import { walStorage } from "./group-host.js";
import { InlineHostLink, WorkerHostLink } from "./host-link.js";
import { loadForgotten, loadJoined, mergeMembers, removeForgotten, saveForgotten, saveJoined } from "./joined.js";
import { walDirs } from "./layout.js";
import { ClusterMember } from "./member.js";
import type { PeerNetworkFactory } from "./peer-network.js";
import { isForgotten, type Member } from "./placement.js";
import { clusterIdOf, PeerTransport } from "./transport.js";
import type { Trace } from "../io/trace.js";
import { parseStamps } from "./trace-stamps.js";

/**
 * The exit code of a member that learns it was forgotten by the cluster
 * (`piccolo cluster forget`): not a bug (70) nor a failed start (71), and a
 * supervisor that restarts it gets 71 (the data directory says so).
 */
export const EXIT_FORGOTTEN = 72;

/**
 * Requests in flight on this member before the IO loop stops reading sockets (and their bytes: limits.ts).
 * It also bounds how long an admitted request queues: in flight divided by the member's rate, which must
 * stay well under CLUSTER_REQUEST_DEADLINE_MS. 16,384 at the ~4,000 writes/s a member of three on two
 * cores manages was 4 s of queue, and hundreds of writes timed out (decision 0110); 4,096 is 1 s there, and
 * still far above what throughput needs (in flight / latency: 4,096 / 5 ms is 800,000 a second).
 */
export const CLUSTER_MAX_IN_FLIGHT = 4_096;

export interface ClusterOptions {
  self: Member;
  /** Every member: the bootstrap list, then those joined since (`--joined`). */
  members: Member[];
  /** The bootstrap list (`--cluster`): placement and the cluster id are computed from it alone. */
  bootstrap: Member[];
  partitions: number;
  replicas: number;
  dataDir: string;
  /** Group worker threads (one group host each); 0 runs one host on the IO thread. */
  shards: number;
  /** Raft's tick (election timeout = electionTicks ticks, randomised up to twice that). */
  tickMs: number;
  /** A group's log is compacted into a snapshot once this many entries are applied past the last one. */
  compactEntries: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Idle ticks before a group goes quiet (0: never; src/raft/raft.ts, wake()). */
  quiesceAfterTicks: number;
  logger: Logger;
  /** Mutual TLS on the peer port (src/security/tls-files.ts, peerOptions); null: plaintext. */
  peerTls: TlsOptions | null;
  /** The secret every member proves it holds in its hello (docs/security.md); null: none. */
  clusterSecret: string | null;
  /**
   * Run a cluster whose members are not all on loopback with neither
   * `peerTls` nor `clusterSecret` (an unauthenticated peer port reachable
   * from other machines). Refused at start unless set (checkPeerProtection).
   */
  allowUnauthenticatedPeers?: boolean;
  /**
   * TEST ONLY: wraps the peer network (the chaos harness's fault injection,
   * src/chaos/peer-faults.ts, installed by src/node/main.ts only when
   * PICCOLO_TEST_FAULT_FILE is set). Absent in production.
   */
  wrapNetwork?: (make: PeerNetworkFactory) => PeerNetworkFactory;
}

/**
 * Safe by default (decision 0262): a peer port reachable from other
 * machines without TLS or a secret lets anyone who reaches it forward
 * commands, move leaders and join. Members all on this machine's loopback
 * (the tests, `npm run cluster`) need neither: nobody else can reach them.
 * Anything else must say how its peers prove who they are, or opt out
 * explicitly; the message names the flags that fix it.
 */
export function checkPeerProtection(
  o: Pick<ClusterOptions, "peerTls" | "clusterSecret" | "allowUnauthenticatedPeers">,
  members: readonly Member[],
): void {
  if (o.peerTls !== null || o.clusterSecret !== null || o.allowUnauthenticatedPeers === true) return;
  const remote = members.find((m) => !isLoopbackHost(m.host));
  if (remote === undefined) return;
  throw new StartError(
    `cannot start: member ${remote.name} is at ${remote.host}:${remote.port}, off this machine's loopback, and the peer port ` +
      "would take anyone who reaches it; give every member the same secret with --cluster-secret-file FILE " +
      "(or PICCOLO_CLUSTER_SECRET; `openssl rand -hex 32 > FILE` makes one), or mutual TLS with --tls-cert-file, " +
      "--tls-key-file and --tls-ca-cert-file (--tls-cluster yes, the default with them); docs/security.md",
  );
}

export class ClusterShards implements ShardBackend {
  readonly count: number;
  private batchEndQueued = false;
  private inFlight = 0;
  /** Bytes of the encoded commands in flight (each is held until answered). */
  private inFlightBytes = 0;

  /** Watch positions are log positions, the same on every member: the cluster's id names their "run". */
  readonly watchRun: string;
  /** A replica answers a watch read at once (nothing parks): the IO thread's Watch polls. */
  readonly watchParks = false;
  /** A backup reads each partition whole from its leader (src/io/backup.ts). */
  readonly backup = { kind: "partitions" } as const;

  /** How traces name this member (docs/tracing.md). */
  readonly traceNode: string;

  private constructor(
    private readonly member: ClusterMember,
    private readonly events: ShardEvents,
    clusterId: bigint,
    self: number,
  ) {
    this.count = member.router.partitions;
    this.watchRun = clusterId.toString(36);
    this.traceNode = `member ${self}`;
  }

  /** A "shard" here is a partition: its leader may be any member. */
  traceWhere(partition: number): string {
    return `partition ${partition}`;
  }

  /**
   * A traced command's answer: the stamps its leader (and, if forwarded,
   * this member's forwarder) put in it (src/cluster/trace-stamps.ts) become
   * spans; without them, one span for the whole trip.
   */
  traceResult(t: Trace, r: Result, sentAt: number, now: number, where: string): void {
    const c = r.clusterTrace === null ? null : parseStamps(r.clusterTrace);
    if (c === null || c.stamps.length === 0) return t.add("executed", where, sentAt, now);
    for (const s of c.stamps) t.add(s.stage, s.where, s.from, s.to, s.detail);
  }

  static async start(o: ClusterOptions, events: ShardEvents): Promise<ClusterShards> {
    const forgotten = await loadForgotten(o.dataDir);
    if (isForgotten(forgotten, o.self))
      throw new StartError(
        `cannot start: member ${o.self.name} (id ${o.self.id}) was forgotten by the cluster (piccolo cluster forget; ` +
          `recorded in ${join(o.dataDir, "forgotten.json")}): it is no longer a member. Its data is stale: delete the ` +
          'data directory; a new member needs a name and an id never used before (docs/cluster.md, "Forgetting a member")',
      );
    // Forgotten members win over the flags (--cluster is given again on every restart) and joined.json.
    const members = removeForgotten(mergeMembers(o.members, await loadJoined(o.dataDir)), forgotten);
    checkPeerProtection(o, members);
    const hosts = Math.max(1, o.shards);
    const dirs = walDirs(o.dataDir, hosts);
    const transport: PeerNetworkFactory = (handlers) =>
      new PeerTransport({
        self: o.self,
        members,
        announce: o.self.id > o.bootstrap.length,
        clusterId: clusterIdOf(o.bootstrap, o.partitions, hash32),
        logger: o.logger,
        tls: o.peerTls,
        secret: o.clusterSecret,
        ...handlers,
      });
    const member = await ClusterMember.open(
      {
        self: o.self,
        members,
        forgotten,
        bootstrap: o.bootstrap,
        partitions: o.partitions,
        replicas: o.replicas,
        hosts,
        tickMs: o.tickMs,
        compactEntries: o.compactEntries,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        quiesceAfterTicks: o.quiesceAfterTicks,
      },
      {
        clock: realClock,
        openHost: (h, linkEvents) =>
          o.shards === 0
            ? InlineHostLink.open(h, linkEvents, {
                clock: realClock,
                rand: Math.random,
                openStorage: walStorage(dirs[h.host]!),
              })
            : WorkerHostLink.open({ ...h, walDir: dirs[h.host]! }, linkEvents),
        network: o.wrapNetwork === undefined ? transport : o.wrapNetwork(transport),
        recordJoined: (joined) => saveJoined(o.dataDir, joined),
        recordForgotten: (list) => saveForgotten(o.dataDir, list),
        removed: (message, detail) => {
          // Forgotten by the cluster: like etcd's removed member, stop rather than serve stale data.
          events.onLog("error", message, detail);
          process.exit(EXIT_FORGOTTEN);
        },
        log: (level, message, detail) => o.logger[level](detail ?? {}, message),
        fatal: (message, detail) => {
          // A failed WAL (WAL_FAILED) or a broken invariant: this member cannot go on safely.
          events.onLog("error", message, detail);
          process.exit(70);
        },
        onPublish: (channel, message) => events.onPeerPublish?.(channel, message),
      },
    );
    return new ClusterShards(member, events, clusterIdOf(o.bootstrap, o.partitions, hash32), o.self.id);
  }

  /** A Redis PUBLISH: relayed to every other member's subscribers (src/cluster/member.ts). */
  publish(channel: Uint8Array, message: Uint8Array): void {
    this.member.publish(channel, message);
  }

  /** The node's client listener is up at `clientAddress`: join the cluster (src/cluster/member.ts). */
  listening(clientAddress: string): Promise<void> {
    return this.member.listening(clientAddress);
  }

  send(partition: number, c: CommandFields): void {
    const bytes = new Uint8Array(commandBytes(c.key.length, c.value === null ? 0 : c.value.length));
    encodeCommand(bytes, 0, c);
    const tag = c.tag;
    this.inFlight++;
    this.inFlightBytes += bytes.length;
    void this.member.request(partition, bytes, c.op, c.flags).then((result) => {
      const wasCongested = this.congested();
      this.inFlight--;
      this.inFlightBytes -= bytes.length;
      const r = new Result();
      r.decode(result);
      r.tag = tag;
      this.events.onResult(r);
      this.batchEnd();
      if (wasCongested && !this.congested()) this.events.onDrain();
    });
  }

  flush(): void {}

  /**
   * Results arrive one promise at a time; the IO loop writes each client's
   * answers at onBatchEnd. Calling it once per event-loop turn, after every
   * result of that turn, gives each connection one socket write per turn
   * instead of one per answer (the profile under load showed a third of the
   * IO thread in socket writes).
   */
  private batchEnd(): void {
    if (this.batchEndQueued) return;
    this.batchEndQueued = true;
    queueMicrotask(() => {
      this.batchEndQueued = false;
      this.events.onBatchEnd();
    });
  }

  congested(): boolean {
    return this.inFlight >= CLUSTER_MAX_IN_FLIGHT || this.inFlightBytes >= CLUSTER_MAX_IN_FLIGHT_BYTES;
  }

  close(): Promise<void> {
    return this.member.close();
  }

  /** A stop's first step: the peers are told this member is leaving, then its leaderships go to them. */
  async handOffLeadership(timeoutMs: number): Promise<{ led: number; left: number }> {
    await this.member.sayLeaving();
    return this.member.admin.handOffLeadership(timeoutMs);
  }

  transferLeader(partition: number, member: number): Promise<string | null> {
    return this.member.admin.transferLeader(partition, member);
  }

  forgetMember(member: number): Promise<string | null> {
    return this.member.admin.forgetMember(member);
  }

  replaceReplica(partition: number, remove: number, add: number): Promise<string | null> {
    return this.member.admin.replaceReplica(partition, remove, add);
  }

  clusterInfo(): Promise<ClusterInfo> {
    return this.member.admin.clusterInfo();
  }
}
