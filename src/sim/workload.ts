/**
 * The clients of the cluster simulator (src/sim/kv-cluster.ts) and the
 * history they leave for the linearizability checker.
 *
 * A client does one operation at a time on a few keys: a read (GET), a write
 * (PUT of a value never written before), or a compare-and-swap (CAS against
 * the version it last saw for a value), each through a member picked at
 * random, with its own timeout (CLIENT_TIMEOUTS_MS: shorter and longer than
 * a member's 5 s request deadline). Each answer is filed as its meaning in
 * the table of outcomes (src/outcomes.ts) says:
 *
 *   OK (and VERSION_MISMATCH for a swap)   ok, with the result
 *   UNAVAILABLE, SHUTTING_DOWN             not applied: left out of the history
 *   TIMEOUT                                unknown (a write); a read says nothing
 *   no answer before the client's timeout,
 *   or the member died meanwhile           unknown
 *
 * So the checker judges the "not applied" promise as well as every OK: a
 * write refused as not applied whose value a read later sees has no write
 * to explain it. Any other status is a failure of the run.
 */
import type { Operation, Value } from "../check/linearizability.js";
import { ErrorCode } from "../errors.js";
import { type CommandFields, FLAG_STALE_READ, Op, Result } from "../shard/command.js";
import type { Prng } from "./prng.js";

/** Client timeouts, one drawn per operation: shorter and longer than the member's 5 s deadline. */
export const CLIENT_TIMEOUTS_MS = [800, 2_500, 7_000, 12_000];

/** A request's end as its client saw it. */
export type Answer = { kind: "answer"; result: Uint8Array } | { kind: "timeout" } | { kind: "lost" };

/** A shard command without its key and time (the member stamps the time when the request arrives). */
export type Request = Omit<CommandFields, "nowMs" | "key">;

/** What the clients need of the simulated world. */
export interface ClientWorld {
  /** Sends a request to member `id`, as over a socket; "lost" at once when the member is down. */
  request(id: number, key: string, request: Request, timeoutMs: number): Promise<Answer>;
  sleep(ms: number): Promise<void>;
  now(): number;
  /** Clients start new operations while this is true. */
  running(): boolean;
  fail(what: string): void;
}

export interface ClientOptions {
  keys: number;
  members: number;
  /** TEST ONLY: reads ask for FLAG_STALE_READ (not linearizable: the checker must object). */
  staleReads: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class Clients {
  readonly history: Operation[] = [];
  /** Answers "not applied" (left out of the history). */
  refused = 0;
  private nextValue = 1;

  constructor(
    private readonly world: ClientWorld,
    private readonly rng: Prng,
    private readonly o: ClientOptions,
  ) {}

  /** Client `id`'s loop, until the world stops running. */
  async run(id: number): Promise<void> {
    const r = this.rng;
    const w = this.world;
    // Per key, value -> version, learned from reads and writes. Versions come
    // from each partition's own counter, so they identify a write only
    // together with its key.
    const seen = new Map<string, Map<string, number>>();
    const versionsOf = (key: string): Map<string, number> => {
      let m = seen.get(key);
      if (m === undefined) seen.set(key, (m = new Map()));
      return m;
    };
    while (w.running()) {
      await w.sleep(r.next() * 20);
      const key = `k${r.int(this.o.keys)}`;
      const member = 1 + r.int(this.o.members);
      const timeoutMs = r.pick(CLIENT_TIMEOUTS_MS);
      const versions = versionsOf(key);
      const choice = r.next();
      const call = w.now();
      let input: Operation["input"];
      let answer: Answer;
      if (choice < 0.4) {
        input = { kind: "read" };
        const flags = this.o.staleReads ? FLAG_STALE_READ : 0;
        answer = await w.request(member, key, { ...command(Op.GET), flags }, timeoutMs);
      } else if (choice < 0.8 || versions.size === 0) {
        const value = `v${this.nextValue++}`;
        input = { kind: "write", value };
        answer = await w.request(member, key, { ...command(Op.PUT), value: enc.encode(value) }, timeoutMs);
      } else {
        const [expected, version] = r.pick([...versions.entries()]);
        const value = `v${this.nextValue++}`;
        input = { kind: "cas", expected, value };
        answer = await w.request(
          member,
          key,
          { ...command(Op.CAS), arg0: version, value: enc.encode(value) },
          timeoutMs,
        );
      }
      this.record(id, key, input, call, answer, versions);
    }
  }

  /** Files one operation in the history as its answer says (see the file comment). */
  record(
    client: number,
    key: string,
    input: Operation["input"],
    call: number,
    answer: Answer,
    versions: Map<string, number>,
  ): void {
    const unknown = (): void => {
      this.history.push({ client, key, input, output: null, call, ret: Number.POSITIVE_INFINITY });
    };
    if (answer.kind !== "answer") {
      // A connection refused by a member that is down carried nothing: the request never left.
      if (answer.kind === "lost" && call === this.world.now()) return;
      return unknown();
    }
    const res = new Result();
    res.decode(answer.result);
    const ret = this.world.now();
    switch (res.status) {
      case ErrorCode.OK:
        break;
      case ErrorCode.VERSION_MISMATCH:
        if (input.kind === "cas") break;
        return this.world.fail(`a ${input.kind} answered VERSION_MISMATCH`);
      case ErrorCode.TIMEOUT:
        // A read that timed out changed nothing and said nothing; a write may have been applied.
        return input.kind === "read" ? undefined : unknown();
      case ErrorCode.UNAVAILABLE:
      case ErrorCode.SHUTTING_DOWN:
        // Nothing was applied: were that false, the checker will find the write's value with no write.
        this.refused++;
        return;
      default:
        return this.world.fail(`a ${input.kind} of ${key} answered status ${res.status}`);
    }
    if (input.kind === "read") {
      const value: Value = res.flag === 1 && res.value !== null ? dec.decode(res.value) : null;
      if (value !== null) versions.set(value, res.version);
      this.history.push({ client, key, input, output: { kind: "read", value }, call, ret });
    } else if (input.kind === "write") {
      versions.set(input.value as string, res.version);
      this.history.push({ client, key, input, output: { kind: "write" }, call, ret });
    } else {
      const ok = res.status === ErrorCode.OK;
      if (ok) versions.set(input.value as string, res.version);
      this.history.push({ client, key, input, output: { kind: "cas", ok }, call, ret });
    }
  }
}

/** A request for `op` with every other field at its zero. */
export function command(op: Op): Request {
  return { op, flags: 0, tag: 0, expireAtMs: 0, arg0: 0, arg1: 0, value: null };
}
