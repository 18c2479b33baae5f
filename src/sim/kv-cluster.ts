/**
 * The cluster simulator: the node's own cluster code, run on virtual time
 * against a simulated network and disks, with faults, and judged by the
 * linearizability checker. TigerBeetle's VOPR runs its real replica code the
 * same way; a failing seed replays exactly.
 *
 * What runs is the code a member runs (src/cluster/member.ts and everything
 * below it): the forwarder with its deadlines and its never-twice rule for
 * writes, the router, membership, member liveness and rebalancing, the group
 * hosts (src/cluster/group-host.ts) with the real MultiRaft, Raft core and
 * partition machine, and, on most seeds, the ring protocol between the IO
 * thread and a group worker (src/cluster/host-link.ts ChannelHostLink and
 * src/cluster/host-server.ts, both ends on this thread). Peer frames are
 * encoded and decoded with the node's codec. Only what touches the outside
 * is simulated, through the interfaces the node passes its real ones
 * through: the clock and timers (src/sim/time.ts), the peer network
 * (src/sim/network.ts), the disks (src/sim/storage.ts).
 *
 * The world, from one seed:
 *   - three members with a replica of every partition each (one seed in
 *     four adds a fourth, which holds no replica of some partitions), one or
 *     two group hosts each, clocks that run a few percent apart;
 *   - a network with TCP's promises (in order, at most once, per
 *     connection) that delays frames, loses some, and is partitioned one way
 *     or both now and then;
 *   - disks whose writes take time, and a crash that tears the write in
 *     flight;
 *   - a nemesis that kills members (kill -9) and restarts them from their
 *     disks, pauses them (SIGSTOP) for up to 8 s, past every deadline,
 *     partitions them, and moves leadership as an operator would;
 *   - clients doing reads, writes and compare-and-swaps on a few keys
 *     through ANY member (a member that does not lead the key's partition
 *     forwards), each with its own timeout, some shorter than the member's
 *     5 s request deadline and some longer (or, with `workload: "bank"`,
 *     transfers and audits as transactions over accounts under one hash
 *     tag: src/sim/bank.ts).
 *
 * Each client operation goes into the history as its answer means
 * (src/sim/workload.ts), and the history to the linearizability checker. A
 * member that stops itself (a broken invariant), a frame the code produced
 * that does not decode, a promise rejected with nobody to handle it, and,
 * after the world heals, a member that cannot serve a read within its
 * deadline fail the run too.
 */
import { checkHistory, type Verdict } from "../check/linearizability.js";
import { CLUSTER_ELECTION_TICKS, CLUSTER_TICK_MS, HEARTBEAT_TICKS } from "../cluster/deadlines.js";
import { ChannelHostLink, type HostLink, InlineHostLink } from "../cluster/host-link.js";
import { GroupHost } from "../cluster/group-host.js";
import { HostServer } from "../cluster/host-server.js";
import { ClusterMember, type MemberDeps } from "../cluster/member.js";
import { type Member, partitionOf } from "../cluster/placement.js";
import { ErrorCode } from "../errors.js";
import { RING_BYTES } from "../limits.js";
import { createRingBuffer, RingReader } from "../ring/ring.js";
import { commandBytes, encodeCommand, Op, Result } from "../shard/command.js";
import { encodeTxnPart, type TxnPartSpec } from "../shard/txn.js";
import { BANK_ACCOUNTS, type BankCounts, BankClients } from "./bank.js";
import { SimNetwork } from "./network.js";
import { Prng } from "./prng.js";
import { SimDiskStorage } from "./storage.js";
import { Scheduler, SimClock, settle } from "./time.js";
import { type Answer, CLIENT_TIMEOUTS_MS, Clients, command, type Request } from "./workload.js";

export interface KvSimOptions {
  seed: number;
  /** Virtual seconds of faults and load (then the world heals and the clients finish). */
  seconds?: number;
  members?: number;
  partitions?: number;
  keys?: number;
  clients?: number;
  /** Group hosts per member. Default: one or two, from the seed. */
  hosts?: number;
  /** "rings": hosts behind the group worker's ring protocol (default, most seeds); "inline": plain calls (`--shards 0`). */
  link?: "rings" | "inline";
  /** Idle ticks before a group goes quiet (0: never). Default: odd seeds quiesce after 10 (the node's default). */
  quiesceAfterTicks?: number;
  /** TEST ONLY: clients ask for stale reads (FLAG_STALE_READ), which may miss acknowledged writes: the checker must catch them. */
  staleReads?: boolean;
  /**
   * register (default): reads, writes and compare-and-swaps on a few keys,
   * judged by the linearizability checker; bank: transfers and audits in
   * transactions over accounts under one hash tag, judged by their total
   * (src/sim/bank.ts).
   */
  workload?: "register" | "bank";
  /** The bank workload's accounts (default BANK_ACCOUNTS). */
  accounts?: number;
  /** TEST ONLY: bank transfers are sent without their compares (lost updates): the audits must catch it. */
  blindTransfers?: boolean;
}

export interface KvSimResult {
  verdict: Verdict;
  operations: number;
  ok: number;
  unknown: number;
  /** Answered "not applied" (UNAVAILABLE): left out of the history. */
  refused: number;
  crashes: number;
  pauses: number;
  partitions: number;
  /** Leadership transfers an operator asked for and a member accepted. */
  transfers: number;
  /** Commands members forwarded to another member. */
  forwarded: number;
  /** By the members' current incarnations. */
  compactions: number;
  snapshotsInstalled: number;
  /** Virtual seconds simulated, and events run. */
  seconds: number;
  events: number;
  /** The bank workload's counts; null for the register workload. */
  bank: BankCounts | null;
}

/** Replicas per partition, as the node's default. */
const REPLICAS = 3;
/** Small, so that logs are compacted and members behind catch up by snapshot. */
const COMPACT_ENTRIES = 40;
/** How often the nemesis considers a fault (virtual ms). */
const NEMESIS_EVERY_MS = 200;
/** How long a healed cluster (its last pause over) has before every member must serve reads. */
const SETTLE_AFTER_HEAL_MS = 4_000;
const enc = new TextEncoder();
const NO_KEY = new Uint8Array(0);

interface Channel {
  link: ChannelHostLink;
  server: HostServer;
  /** Views on the two rings, to see whether records wait in them. */
  toHost: RingReader;
  fromHost: RingReader;
}

/** One member's process: its disks survive it, the rest is its current incarnation. */
interface Slot {
  id: number;
  disks: SimDiskStorage[];
  clock: SimClock;
  member: ClusterMember | null;
  channels: Channel[];
  /** Clients waiting for this incarnation's answers (told "lost" if it dies). */
  waiting: Set<(a: Answer) => void>;
  /** Forwarded counts of earlier incarnations. */
  forwardedBefore: number;
}

export class SimFailure extends Error {
  override name = "SimFailure";
}

export class KvSimulation {
  private readonly o: Required<Omit<KvSimOptions, "staleReads" | "blindTransfers">> & {
    staleReads: boolean;
    blindTransfers: boolean;
  };
  private readonly bank: BankClients | null;
  private readonly rng: Prng;
  private readonly sched = new Scheduler();
  private readonly net: SimNetwork;
  private readonly members: Member[];
  private readonly slots: Slot[] = [];
  private readonly clients: Clients;
  private failure: string | null = null;
  private crashes = 0;
  private pauses = 0;
  private partitions = 0;
  private transfers = 0;
  /** Clients issue new operations while this is false. */
  private stopping = false;
  /** Recent warnings and errors the members logged, for a failure's report. */
  private readonly logs: string[] = [];

  constructor(o: KvSimOptions) {
    this.o = {
      seconds: 20,
      // One seed in four has a fourth member, which holds no replica of some partitions and forwards
      // what it is asked for them to whoever it learns leads them.
      members: o.seed % 4 === 3 ? 4 : 3,
      partitions: 4,
      keys: 3,
      clients: 4,
      // Derived from the seed, not drawn: the mix is known from the seed alone.
      hosts: 1 + ((o.seed >>> 1) % 2),
      link: o.seed % 5 === 0 ? "inline" : "rings",
      quiesceAfterTicks: o.seed % 2 === 1 ? 10 : 0,
      staleReads: false,
      blindTransfers: false,
      workload: "register",
      accounts: BANK_ACCOUNTS,
      ...o,
    };
    this.rng = new Prng(o.seed);
    this.clients = new Clients(
      {
        request: (id, key, request, timeoutMs) => this.request(id, key, request, timeoutMs),
        sleep: (ms) => this.sleep(ms),
        now: () => this.sched.now,
        running: () => !this.stopping && this.failure === null,
        fail: (what) => this.fail(what),
      },
      this.rng,
      { keys: this.o.keys, members: this.o.members, staleReads: this.o.staleReads },
    );
    this.bank =
      this.o.workload === "bank"
        ? new BankClients(
            {
              txn: (id, key, flags, part, timeoutMs) =>
                this.request(id, key, { ...command(Op.TXN), flags, arg0: -1, arg1: 1 }, timeoutMs, part),
              sleep: (ms) => this.sleep(ms),
              now: () => this.sched.now,
              running: () => !this.stopping && this.failure === null,
              fail: (what) => this.fail(what),
            },
            this.rng,
            { members: this.o.members, accounts: this.o.accounts, blind: this.o.blindTransfers },
          )
        : null;
    this.net = new SimNetwork(this.sched, this.rng, { lossRate: 0.01, slowRate: 0.02 });
    this.members = Array.from({ length: this.o.members }, (_, i) => ({
      id: i + 1,
      name: `n${i + 1}`,
      host: "sim",
      port: i + 1,
    }));
    for (const m of this.members)
      this.slots.push({
        id: m.id,
        disks: Array.from({ length: this.o.hosts }, () => new SimDiskStorage(this.rng)),
        clock: new SimClock(this.sched, 1),
        member: null,
        channels: [],
        waiting: new Set(),
        forwardedBefore: 0,
      });
  }

  async run(): Promise<KvSimResult> {
    const onRejection = (err: unknown): void =>
      this.fail(`a promise was rejected and nobody handled it: ${String(err)}`);
    process.on("unhandledRejection", onRejection);
    try {
      return await this.runWorld();
    } finally {
      process.off("unhandledRejection", onRejection);
    }
  }

  private async runWorld(): Promise<KvSimResult> {
    for (const s of this.slots) this.boot(s);
    await this.advance(500); // the first elections
    if (this.bank !== null && !(await this.settled(this.bank.create()))) this.check();
    let running = this.o.clients;
    const bank = this.bank;
    const clients = Array.from({ length: this.o.clients }, (_, i) =>
      (bank === null ? this.clients.run(i) : bank.run(i)).finally(() => running--),
    );
    this.nemesis();
    await this.advance(this.o.seconds * 1_000);
    // Heal: every member up, running and connected; then no new operations, and the ones under way finish.
    this.stopping = true;
    const pausedUntil = this.heal();
    await this.advance(pausedUntil - this.sched.now + SETTLE_AFTER_HEAL_MS);
    await this.finalReads();
    const end = this.sched.now + Math.max(...CLIENT_TIMEOUTS_MS) + 1_000;
    while (running > 0 && this.sched.now < end) await this.advance(100);
    this.check();
    await Promise.all(clients);
    let compactions = 0;
    let snapshotsInstalled = 0;
    let forwarded = 0;
    for (const s of this.slots) {
      forwarded += s.forwardedBefore + (s.member?.forwarder.forwarded ?? 0);
      const hosts = s.member?.router.hosts ?? [];
      const statuses = await this.settled(Promise.all(hosts.map((h: HostLink) => h.status())));
      for (const st of statuses) {
        compactions += st.compactions;
        snapshotsInstalled += st.snapshotsInstalled;
      }
    }
    this.check();
    const history = this.clients.history;
    const verdict = checkHistory(history);
    const b = this.bank?.counts ?? null;
    return {
      verdict,
      operations: b === null ? history.length : b.transfers + b.audits,
      ok: b === null ? history.filter((h) => h.output !== null).length : b.committed + b.conflicts + b.auditsOk,
      unknown: b === null ? history.filter((h) => h.output === null).length : b.unknown,
      refused: b === null ? this.clients.refused : b.refused,
      crashes: this.crashes,
      pauses: this.pauses,
      partitions: this.partitions,
      transfers: this.transfers,
      forwarded,
      compactions,
      snapshotsInstalled,
      seconds: Math.round(this.sched.now) / 1_000,
      events: this.sched.ran,
      bank: b === null ? null : { ...b },
    };
  }

  /** Runs the world for `ms` virtual ms. */
  private async advance(ms: number): Promise<void> {
    await this.sched.runUntil(this.sched.now + ms, () => this.between());
    this.check();
  }

  /** Resolves `p` while the world runs (for answers that cross a ring). */
  private async settled<T>(p: Promise<T>): Promise<T> {
    let done = false;
    let value: T | undefined;
    void p.then((v) => {
      done = true;
      value = v;
    });
    for (let i = 0; i < 1_000 && !done; i++) await this.advance(10);
    if (!done) this.fail("an answer never came");
    return value as T;
  }

  /**
   * After each event: let every reaction run, and every ring be read, until
   * nothing is left to do at this instant. A paused member's rings wait.
   */
  private async between(): Promise<void> {
    await settle();
    for (let pass = 0; pass < 10_000; pass++) {
      let busy = false;
      for (const s of this.slots) {
        if (s.member === null || s.clock.pausedUntil > this.sched.now) continue;
        for (const c of s.channels) {
          if (c.toHost.usedBytes() > 0) {
            c.server.input.poll();
            busy = true;
          }
          if (c.fromHost.usedBytes() > 0) {
            c.link.poll();
            busy = true;
          }
        }
      }
      if (!busy) return;
      await settle();
    }
    this.fail("the rings between a member's threads never went quiet");
  }

  private fail(what: string): void {
    this.failure ??= `seed ${this.o.seed}, t=${(this.sched.now / 1_000).toFixed(3)} s: ${what}${
      this.logs.length > 0 ? `\nlast member logs:\n  ${this.logs.join("\n  ")}` : ""
    }`;
  }

  private check(): void {
    if (this.failure === null && this.net.failure !== null) this.fail(this.net.failure);
    if (this.failure !== null) throw new SimFailure(this.failure);
  }

  // ---- members ------------------------------------------------------------

  /** Starts a new incarnation of a member from its disks. */
  private boot(s: Slot): void {
    const clock = new SimClock(this.sched, 0.97 + this.rng.next() * 0.06, 1_800_000_000_000 + this.rng.int(1_000));
    const rand = this.rng.fork();
    s.clock = clock;
    s.channels = [];
    const channels = s.channels;
    const deps: MemberDeps = {
      clock,
      openHost: async (o, events) => {
        const hostDeps = { clock, rand, openStorage: s.disks[o.host]!.opener(clock) };
        if (this.o.link === "inline") return InlineHostLink.open(o, events, hostDeps);
        // The group worker's two rings, both ends on this thread (the simulator reads them: between()).
        const toHost = createRingBuffer(RING_BYTES);
        const fromHost = createRingBuffer(RING_BYTES);
        const server = new HostServer(toHost, fromHost);
        const host = await GroupHost.open(o, server.hostOut, hostDeps);
        server.attach(host);
        host.start();
        const link = new ChannelHostLink(toHost, fromHost, events);
        channels.push({ link, server, toHost: new RingReader(toHost), fromHost: new RingReader(fromHost) });
        return link;
      },
      network: (handlers) => this.net.attach(s.id, clock, handlers),
      recordJoined: () => {},
      log: (level, message, detail) => {
        if (level !== "warn" && level !== "error") return;
        this.logs.push(
          `t=${(this.sched.now / 1_000).toFixed(3)} member ${s.id} ${level}: ${message} ${JSON.stringify(detail ?? {})}`,
        );
        if (this.logs.length > 20) this.logs.shift();
      },
      fatal: (message, detail) => {
        if (!clock.dead) this.fail(`member ${s.id} stopped itself: ${message} ${JSON.stringify(detail ?? {})}`);
      },
    };
    const self = this.members[s.id - 1]!;
    ClusterMember.open(
      {
        self,
        members: this.members,
        bootstrap: this.members,
        partitions: this.o.partitions,
        replicas: REPLICAS,
        hosts: this.o.hosts,
        tickMs: CLUSTER_TICK_MS, // Raft's clock, as the node's defaults
        compactEntries: COMPACT_ENTRIES,
        electionTicks: CLUSTER_ELECTION_TICKS,
        heartbeatTicks: HEARTBEAT_TICKS,
        quiesceAfterTicks: this.o.quiesceAfterTicks,
      },
      deps,
    ).then(
      (member) => {
        if (clock.dead) return;
        s.member = member;
        return member.listening(`sim:${s.id}`);
      },
      (err: unknown) => this.fail(`member ${s.id} did not start: ${(err as Error).stack ?? String(err)}`),
    );
  }

  /** kill -9: the process and everything in it are gone; its disks keep what they had. */
  private crash(s: Slot): void {
    if (s.member === null) return;
    s.forwardedBefore += s.member.forwarder.forwarded;
    s.clock.kill();
    this.net.crash(s.id);
    for (const d of s.disks) d.crash();
    s.member = null;
    s.channels = [];
    for (const w of s.waiting) w({ kind: "lost" });
    s.waiting.clear();
    this.crashes++;
  }

  /** Faults, one decision every NEMESIS_EVERY_MS while the clients run. */
  private nemesis(): void {
    const r = this.rng;
    const tick = (): void => {
      if (this.stopping) return;
      const up = this.slots.filter((s) => s.member !== null);
      const down = this.slots.filter((s) => s.member === null);
      if (down.length > 0 && r.chance(0.2)) this.boot(r.pick(down));
      else if (up.length > 1 && r.chance(down.length === 0 ? 0.03 : 0.005)) {
        // Half the time, a member in the middle of a disk write (a crash then tears it).
        const writing = up.filter((s) => s.disks.some((d) => d.writing));
        this.crash(r.pick(writing.length > 0 && r.chance(0.5) ? writing : up));
      }
      if (r.chance(0.03) && up.length > 0) {
        // SIGSTOP, sometimes for longer than every deadline.
        const s = r.pick(up);
        s.clock.pause(r.chance(0.3) ? 5_000 + r.int(3_000) : 50 + r.int(2_000));
        this.pauses++;
      }
      if (this.net.blocked.size === 0 && r.chance(0.04)) this.partition();
      const live = this.slots.filter((s) => s.member !== null);
      if (r.chance(0.02) && live.length > 0) {
        // An operator moves a partition's leadership (`piccolo cluster transfer-leader`) through any member.
        const via = r.pick(live).member!;
        void via.admin.transferLeader(r.int(this.o.partitions), 1 + r.int(this.o.members)).then(
          (why) => {
            if (why === null) this.transfers++;
          },
          (err: unknown) => this.fail(`a leadership transfer failed: ${(err as Error).stack ?? String(err)}`),
        );
      }
      this.sched.after(NEMESIS_EVERY_MS, tick);
    };
    this.sched.after(NEMESIS_EVERY_MS, tick);
  }

  /** A partition: one member cut off both ways, or one way only, or one pair of members. */
  private partition(): void {
    const r = this.rng;
    const ids = this.members.map((m) => m.id);
    const m = r.pick(ids);
    const kind = r.int(4);
    for (const x of ids) {
      if (x === m) continue;
      if (kind === 0 || kind === 1) this.net.blocked.add(`${m}>${x}`); // m cannot send
      if (kind === 0 || kind === 2) this.net.blocked.add(`${x}>${m}`); // m cannot hear
    }
    if (kind === 3) {
      const x = r.pick(ids.filter((i) => i !== m));
      this.net.blocked.add(`${m}>${x}`);
      if (r.chance(0.5)) this.net.blocked.add(`${x}>${m}`);
    }
    this.partitions++;
    // Most partitions are short; some outlast every deadline.
    const id = this.partitions;
    const ms = r.chance(0.3) ? 4_000 + r.int(6_000) : 200 + r.int(2_800);
    this.sched.after(ms, () => {
      if (this.partitions === id) this.net.blocked.clear();
    });
  }

  /** No more faults: partitions heal and every member is started. Returns when the last pause ends. */
  private heal(): number {
    this.net.blocked.clear();
    let until = this.sched.now;
    for (const s of this.slots) {
      if (s.member === null) this.boot(s);
      else until = Math.max(until, s.clock.pausedUntil);
    }
    return until;
  }

  // ---- clients ------------------------------------------------------------

  /**
   * Sends one encoded command to member `id`, as a client would over a
   * socket; waits up to `timeoutMs`. With `txn`, the command is an Op.TXN
   * carrying that one-participant part (encoded when the request arrives, as
   * the IO thread stamps its time) and no key of its own, routed to `key`'s
   * partition.
   */
  private request(id: number, key: string, fields: Request, timeoutMs: number, txn?: TxnPartSpec): Promise<Answer> {
    const s = this.slots[id - 1]!;
    const member = s.member;
    if (member === null) return Promise.resolve({ kind: "lost" }); // connection refused
    return new Promise<Answer>((resolve) => {
      let done = false;
      const finish = (a: Answer): void => {
        if (done) return;
        done = true;
        s.waiting.delete(finish);
        resolve(a);
      };
      s.waiting.add(finish);
      this.sched.after(timeoutMs, () => finish({ kind: "timeout" }));
      // The request reaches the member after a socket's latency, and waits there while it is paused.
      s.clock.event(0.05 + this.rng.next() * 0.5, () => {
        if (s.member !== member) return;
        const k = enc.encode(key);
        const nowMs = s.clock.now();
        const value = txn === undefined ? fields.value : encodeTxnPart(txn, nowMs);
        const commandKey = txn === undefined ? k : NO_KEY;
        const bytes = new Uint8Array(commandBytes(commandKey.length, value?.length ?? 0));
        encodeCommand(bytes, 0, { ...fields, key: commandKey, value, nowMs });
        const partition = partitionOf(k, this.o.partitions);
        member.request(partition, bytes, fields.op, fields.flags).then(
          (result) => finish({ kind: "answer", result }),
          (err: unknown) => this.fail(`member ${id} failed a request: ${(err as Error).stack ?? String(err)}`),
        );
      });
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.sched.after(ms, resolve));
  }

  /**
   * After healing, every member serves a read of every key (forwarding to
   * its leader where it is not one) within its request deadline: a member
   * the faults left unable to serve is a failure, even if nothing it said
   * was wrong. The reads join the history.
   */
  private async finalReads(): Promise<void> {
    const reads: Promise<void>[] = [];
    const bank = this.bank;
    if (bank !== null) {
      // Every member serves an audit, and it adds up (an audit that does not fails the run itself).
      for (const s of this.slots)
        reads.push(
          bank.audit(s.id, 6_000, `the final audit through member ${s.id}`).then((answered) => {
            if (!answered)
              this.fail(
                `liveness: ${SETTLE_AFTER_HEAL_MS} ms after healing, member ${s.id} could not serve an audit of the accounts`,
              );
          }),
        );
      await this.settled(Promise.all(reads));
      return;
    }
    for (const s of this.slots)
      for (let k = 0; k < this.o.keys; k++) {
        const key = `k${k}`;
        const call = this.sched.now;
        reads.push(
          this.request(s.id, key, command(Op.GET), 6_000).then((a) => {
            const res = new Result();
            if (a.kind !== "answer" || !res.decode(a.result) || res.status !== ErrorCode.OK)
              return this.fail(
                `liveness: ${SETTLE_AFTER_HEAL_MS} ms after healing, member ${s.id} could not serve a read of ${key} (${a.kind === "answer" ? `status ${res.status}` : a.kind})`,
              );
            this.clients.record(-1, key, { kind: "read" }, call, a, new Map());
          }),
        );
      }
    const all = Promise.all(reads);
    await this.settled(all);
  }
}
