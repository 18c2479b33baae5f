/**
 * A cluster member, assembled: its group hosts, what it knows of the others
 * (membership, routes), the request path (forwarder), liveness and
 * rebalancing, the operator's requests (admin), and the peer network that
 * connects it to the others. This file only wires them; each part owns one
 * idea:
 *
 *   router.ts      where a partition's requests go (host here, leader, hints)
 *   membership.ts  the members known, and those that join later
 *   forwarder.ts   running a command on its leader; never a write twice
 *   liveness.ts    which peers are alive (quiescence) and where leaders belong
 *   admin.ts       cluster info, leadership transfer, replica replacement
 *
 * Everything a member touches outside itself is passed in (MemberDeps): the
 * clock and timers, its group hosts (on worker threads, inline, or in the
 * simulator), the peer network, where joined members are recorded, and what
 * to do when it must stop. The node passes the real ones
 * (src/cluster/backend.ts); the simulator (src/sim/kv-cluster.ts) passes
 * virtual time, simulated disks and a simulated network, and runs this code
 * and everything below it as it is.
 */
import { ErrorCode } from "../errors.js";
import { PEER_LEAVING_ACK_MAX_MS } from "../limits.js";
import { FLAG_STALE_READ, isWriteCommand, Op } from "../shard/command.js";
import { Admin } from "./admin.js";
import { type Clock, sleep } from "./clock.js";
import { HOST_REQUEST_DEADLINE_MS } from "./deadlines.js";
import { Forwarder } from "./forwarder.js";
import { errorResult, type HostOptions, ServeMode } from "./group-host.js";
import type { HostLink, LinkEvents } from "./host-link.js";
import { Liveness } from "./liveness.js";
import { Membership } from "./membership.js";
import { encodeLeaving, encodePublish, type GroupMessage } from "./peer-codec.js";
import type { PeerFrame, PeerHandlers, PeerNetwork, PeerNetworkFactory } from "./peer-network.js";
import type { ForgottenMember, Member } from "./placement.js";
import { Router } from "./router.js";

export interface MemberOptions {
  self: Member;
  /** Every member known at start: the bootstrap list, then those joined since. */
  members: readonly Member[];
  /** Members forgotten before this start (they are left out of `members`' address book whatever it says). */
  forgotten?: readonly ForgottenMember[];
  /** The bootstrap list (`--cluster`): placement is computed from it alone. */
  bootstrap: readonly Member[];
  partitions: number;
  replicas: number;
  /** Group hosts (at least one): host h holds the partitions p with p % hosts === h. */
  hosts: number;
  /** Raft's tick (election timeout = electionTicks ticks, randomised up to twice that). */
  tickMs: number;
  /** A group's log is compacted into a snapshot once this many entries are applied past the last one. */
  compactEntries: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Idle ticks before a group goes quiet (0: never; src/raft/raft.ts, wake()). */
  quiesceAfterTicks: number;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

/** What a member is given (see the file comment). */
export interface MemberDeps {
  clock: Clock;
  /** Opens one group host (src/cluster/host-link.ts). */
  openHost(o: HostOptions, events: LinkEvents): Promise<HostLink>;
  network: PeerNetworkFactory;
  /** Records the members joined after bootstrap durably; throws when it cannot. */
  recordJoined(joined: Member[]): void;
  /** Records the forgotten members (the whole list) durably; throws when it cannot. */
  recordForgotten?(forgotten: ForgottenMember[]): void;
  /**
   * A peer says this member was forgotten (`piccolo cluster forget`): it is
   * no longer a member and must stop (the forgotten list, this member in it,
   * is recorded first, so a restart refuses too). Absent: only logged.
   */
  removed?(message: string, detail: object): void;
  log(level: LogLevel, message: string, detail?: object): void;
  /** Storage failed or an invariant broke: this member cannot go on safely, and must stop. */
  fatal(message: string, detail?: object): void;
  /** Another member relayed a Redis PUBLISH: deliver it to this member's own subscribers. */
  onPublish?(channel: Uint8Array, message: Uint8Array): void;
}

export class ClusterMember {
  readonly router: Router;
  readonly membership: Membership;
  /** Set by open(), once the hosts are (the network and what uses it come after them). */
  net!: PeerNetwork;
  forwarder!: Forwarder;
  liveness!: Liveness;
  admin!: Admin;
  /** host:port of this member's client listener (set by listening()). */
  clientAddress = "";
  /** Peers told this member is leaving that have not acknowledged it yet (sayLeaving()). */
  private readonly unacknowledged = new Set<number>();
  private saidLeaving = false;

  private constructor(
    private readonly o: MemberOptions,
    private readonly deps: MemberDeps,
  ) {
    this.router = new Router(o.self.id, o.bootstrap, o.partitions, o.replicas);
    this.membership = new Membership(
      o.self,
      o.bootstrap.length,
      o.members,
      (joined) => deps.recordJoined(joined),
      (message, detail) => deps.log("warn", message, detail),
      o.forgotten ?? [],
      (forgotten) => deps.recordForgotten?.(forgotten),
    );
  }

  static async open(o: MemberOptions, deps: MemberDeps): Promise<ClusterMember> {
    const m = new ClusterMember(o, deps);
    try {
      await m.openHosts();
    } catch (err) {
      await Promise.allSettled(m.router.hosts.map((h) => h.close()));
      throw err;
    }
    m.connect();
    return m;
  }

  private async openHosts(): Promise<void> {
    const o = this.o;
    const events: LinkEvents = {
      // Hosts start ticking as soon as they are open, before the network exists: what they
      // send meanwhile is lost, as on any unreliable link (Raft resends).
      sendFrame: (to, frame) => (this.net as PeerNetwork | undefined)?.sendFrame(to, frame),
      route: (r) => this.router.setRoute(r),
      log: (level, message, detail) => this.deps.log(level, message, detail),
      badFrame: (from, why) => this.net.reject(from, why),
      fatal: (message, detail) => this.deps.fatal(message, detail),
    };
    const opened = await Promise.allSettled(
      Array.from({ length: o.hosts }, (_, h) =>
        this.deps.openHost(
          {
            self: o.self.id,
            host: h,
            hosts: o.hosts,
            bootstrap: [...o.bootstrap],
            partitions: o.partitions,
            replicas: o.replicas,
            tickMs: o.tickMs,
            compactEntries: o.compactEntries,
            electionTicks: o.electionTicks,
            heartbeatTicks: o.heartbeatTicks,
            quiesceAfterTicks: o.quiesceAfterTicks,
          },
          events,
        ),
      ),
    );
    for (const r of opened) if (r.status === "fulfilled") this.router.hosts.push(r.value);
    const failed = opened.find((r) => r.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  private connect(): void {
    const hosts = this.router.hosts;
    const handlers: PeerHandlers = {
      onMessages: (_from, messages) => this.stepMessages(messages),
      onFrame: (from, f) => this.onFrame(from, f),
      onPeerDown: (peer) => {
        this.unacknowledged.delete(peer);
        this.forwarder.peerDown(peer);
      },
      onJoin: (m) => this.membership.learn(m),
      clientAddress: () => this.clientAddress,
      forgotten: () => this.membership.forgotten(),
      onForgotten: (m, from) => this.forgottenByPeer(m, from),
      onSelfForgotten: (by, list) => this.selfForgotten(by, list),
    };
    // One group worker: its Raft frames cross the ring as they arrived, decoded once, there.
    const only = hosts.length === 1 ? hosts[0]! : undefined;
    if (only?.stepFrame !== undefined) handlers.onRaftFrame = (from, frame) => only.stepFrame!(from, frame);
    this.net = this.deps.network(handlers);
    const { clock } = this.deps;
    const self = this.o.self.id;
    this.forwarder = new Forwarder(self, this.o.tickMs, clock, this.net, this.router, this.membership);
    const { tickMs, heartbeatTicks, electionTicks } = this.o;
    this.liveness = new Liveness(
      { self, tickMs, heartbeatTicks, electionTicks },
      clock,
      this.net,
      this.membership,
      hosts,
      (m) => this.forwarder.isLeaving(m),
    );
    this.admin = new Admin(
      self,
      this.router,
      this.membership,
      this.net,
      () => this.forwarder.forwarded,
      () => this.clientAddress,
      (level, message, detail) => this.deps.log(level, message, detail),
    );
  }

  /**
   * A peer's hello says it forgot member `m`: forget it here too, without
   * this member's own check of its replicas (src/cluster/admin.ts,
   * forgetMember). The member that took the operator's request made that
   * check, against its replicas and the partitions' leaders; a member
   * hearing of it in a hello has usually just come back, and its own
   * replicas' configurations are the stale ones (decision 0214).
   */
  private forgottenByPeer(m: ForgottenMember, from: number): void {
    try {
      this.membership.forget(m);
    } catch (err) {
      // Not recorded, so not done: the next hello from any peer says it again.
      this.deps.log("warn", "could not record a forgotten member", { member: m.name, err: (err as Error).message });
      return;
    }
    this.net.forget(m.id);
    this.deps.log("info", "forgot a member, as a peer said (piccolo cluster forget)", {
      member: m.name,
      id: m.id,
      from,
    });
  }

  /** A peer says this member was forgotten: record it (a restart then refuses to start), and stop. */
  private selfForgotten(by: number, list: readonly ForgottenMember[]): void {
    for (const f of list)
      try {
        this.membership.forget(f);
      } catch {
        // Stopping matters more than the record; without it a restart is refused by the peers instead.
      }
    const message =
      "this member was forgotten by the cluster (piccolo cluster forget): it is no longer a member and stops; " +
      "its data is stale: delete its data directory. A new member needs a name and an id never used before " +
      '(docs/cluster.md, "Forgetting a member")';
    const detail = { self: this.o.self.name, id: this.o.self.id, toldBy: by };
    if (this.deps.removed !== undefined) this.deps.removed(message, detail);
    else this.deps.log("error", message, detail);
  }

  /**
   * The node's client listener is up at `clientAddress`: join the cluster.
   * The peer network starts only now so that every hello can carry the
   * address clients reach this member at (with --port 0 it is not known
   * before), which is how `piccolo cluster status` and the cluster client
   * find every member from one. A wildcard listener (0.0.0.0, ::) is
   * announced with the host of this member's peer address, which the other
   * members reach it at by definition.
   */
  async listening(clientAddress: string): Promise<void> {
    const m = /^(.*):(\d+)$/.exec(clientAddress);
    const wildcard = m !== null && (m[1] === "0.0.0.0" || m[1] === "::" || m[1] === "[::]");
    this.clientAddress = wildcard ? `${this.o.self.host}:${m[2]}` : clientAddress;
    await this.net.start();
    this.liveness.start();
  }

  /**
   * Serves one encoded command for `partition`; resolves with the encoded
   * Result. STATS reads this member's own numbers. A stale read
   * (FLAG_STALE_READ, asked for per request) on a member holding a replica
   * is served from this replica's map as it is now: no leader, no
   * ReadIndex, so it works when no leader is reachable and spreads reads
   * over replicas, but it may miss writes this replica has not applied yet,
   * by any amount (docs/cluster.md, "Stale reads"; decision 0188). A member
   * without a replica forwards it to the leader like any read. Everything
   * else goes to the partition's leader (src/cluster/forwarder.ts).
   */
  request(partition: number, command: Uint8Array, op: number, flags: number): Promise<Uint8Array> {
    const write = isWriteCommand(op, flags);
    // A watch read is served by any replica: its positions are log positions (docs/watch.md).
    const stale =
      ((flags & FLAG_STALE_READ) !== 0 || op === Op.WATCH) && !write && this.router.route(partition).replica;
    if (op === Op.STATS || stale)
      return this.router
        .hostOf(partition)
        .serve(partition, ServeMode.Local, command)
        .then((o) => (o.kind === "result" ? o.result : errorResult(ErrorCode.UNAVAILABLE)));
    return this.forwarder.execute(partition, command, write);
  }

  /**
   * The end of a stop (decision 0298), so that no command other members
   * forwarded here is left without its answer: the peers were told at its
   * start that this member is leaving (sayLeaving; told now if not), and
   * have acknowledged, so every command they forwarded has been read. Those
   * still being served are answered, and only then do the connections
   * close (gently: transport.ts, stop).
   */
  async close(): Promise<void> {
    this.forwarder.close();
    if (!this.saidLeaving) await this.sayLeaving();
    await this.forwarder.drain(HOST_REQUEST_DEADLINE_MS);
    this.liveness.stop();
    await this.net.stop();
    await Promise.all(this.router.hosts.map((h) => h.close()));
  }

  /**
   * Tells every connected peer this member is leaving; resolves when each
   * has acknowledged, or gone, or after PEER_LEAVING_ACK_MAX_MS. A stop's
   * first step (backend.ts, handOffLeadership), before the handover: from
   * then on the peers forward nothing here, and their rebalancing hands
   * no partition back to a member on its way out (liveness.ts).
   */
  async sayLeaving(): Promise<void> {
    this.saidLeaving = true;
    const frame = encodeLeaving(false);
    for (const peer of this.net.stats())
      if (peer.member !== this.o.self.id && peer.connected && this.net.sendFrame(peer.member, frame))
        this.unacknowledged.add(peer.member);
    const clock = this.deps.clock;
    const by = clock.now() + PEER_LEAVING_ACK_MAX_MS;
    while (this.unacknowledged.size > 0 && clock.now() < by) await sleep(clock, 5);
    this.unacknowledged.clear();
  }

  private onFrame(from: number, f: PeerFrame): void {
    switch (f.kind) {
      case "leaving":
        if (f.ack) this.unacknowledged.delete(from);
        else {
          // Nothing more goes to it from here; the acknowledgement follows the last forward on this connection.
          this.forwarder.leaving(from);
          this.net.sendFrame(from, encodeLeaving(true));
        }
        return;
      case "forward":
        void this.forwarder.serve(from, f.id, f.group, f.write, f.command);
        return;
      case "forwardReply":
        this.forwarder.answered(f.id, f.outcome);
        return;
      case "transfer":
        this.admin.onTransfer(f.group, f.to);
        return;
      case "replace":
        this.admin.onReplace(f.group, f.remove, f.add);
        return;
      case "publish":
        this.deps.onPublish?.(f.channel, f.message);
        return;
    }
  }

  /**
   * A Redis PUBLISH on this member: every other member gets it for its own
   * subscribers (as Redis Cluster's bus relays it). Fire-and-forget: a
   * member that is unreachable now misses it, as Redis's pub/sub would.
   */
  publish(channel: Uint8Array, message: Uint8Array): void {
    const frame = encodePublish(channel, message);
    for (const peer of this.net.stats()) if (peer.member !== this.o.self.id) this.net.sendFrame(peer.member, frame);
  }

  /** Splits a peer's Raft messages among the hosts that own their partitions (one call per host). */
  private stepMessages(messages: GroupMessage[]): void {
    if (messages.length === 0) return; // a keep-alive ping: its arrival is all it says
    const hosts = this.router.hosts;
    if (hosts.length === 1) return hosts[0]!.step(messages);
    const per: GroupMessage[][] = hosts.map(() => []);
    for (const m of messages) if (m.group >= 0 && m.group < this.o.partitions) per[m.group % hosts.length]!.push(m);
    for (let h = 0; h < per.length; h++) if (per[h]!.length > 0) hosts[h]!.step(per[h]!);
  }
}
