/**
 * A linearizability checker for a key-value register history: the judge of
 * the cluster's fault tests (issue #7) and of anything else that records
 * what clients saw.
 *
 * A history is what clients observed: each operation was invoked at some
 * time and returned at a later one, with a result, or never returned (a
 * timeout, a dropped connection: the outcome is unknown). The history is
 * linearizable if every operation can be given a single instant between its
 * invocation and its return, such that executing them one at a time in that
 * order, against a plain register, gives exactly the results observed.
 * That is the promise a linearizable store makes (Herlihy & Wing, 1990).
 *
 * The search is Wing & Gong's (1993) with Lowe's memoisation (2017), as in
 * Knossos and Porcupine:
 *   - Keys are independent registers, so the history is split per key and
 *     each is checked alone (linearizability is compositional, P-compositional
 *     in Horn & Kroening's terms): many small searches instead of one huge one.
 *   - Events (calls and returns) are kept in time order in a linked list. The
 *     search repeatedly picks a call whose operation can go next (the model
 *     accepts its result in the current state), "lifts" the operation out of
 *     the list, and goes on; when it meets a return whose operation has not
 *     been placed, that operation should already have happened, so it
 *     backtracks.
 *   - A cache of (set of operations placed, register state) pairs already
 *     explored prunes the exponential search to what is new.
 *
 * Unknown outcomes: an operation that never returned may have taken effect
 * at any instant after its call, or never. Giving it a return time of +inf
 * and accepting any result for it covers both: it can be placed anywhere
 * after its call, including after everything else, where it changes nothing
 * anyone saw.
 *
 * The search is bounded (maxSteps); a history too hard to decide within the
 * bound gets "unknown", never a guess.
 */

export type Value = string | null;

/** What a client asked. `null` as a value means "absent": delete is write(null). */
export type RegisterInput =
  | { kind: "read" }
  | { kind: "write"; value: Value }
  | { kind: "cas"; expected: Value; value: Value };

/** What it was told. */
export type RegisterOutput = { kind: "read"; value: Value } | { kind: "write" } | { kind: "cas"; ok: boolean };

export interface Operation {
  /** Which client (for reports). */
  client: number;
  key: string;
  input: RegisterInput;
  /** null: the outcome is unknown (timeout, connection lost). */
  output: RegisterOutput | null;
  /** Invocation time (any monotonic unit). */
  call: number;
  /** Return time; ignored (taken as +inf) when the outcome is unknown. */
  ret: number;
}

export type Verdict =
  | { ok: true; keys: number; operations: number }
  | { ok: false; key: string; operations: Operation[]; detail: string }
  | { ok: "unknown"; key: string; detail: string };

/** One step of the register model: the next state, or null when `output` is impossible in `state`. */
export function step(state: Value, input: RegisterInput, output: RegisterOutput | null): Value | undefined {
  switch (input.kind) {
    case "read":
      if (output === null) return state;
      return output.kind === "read" && output.value === state ? state : undefined;
    case "write":
      return input.value;
    case "cas": {
      const matches = state === input.expected;
      if (output === null) return matches ? input.value : state;
      if (output.kind !== "cas" || output.ok !== matches) return undefined;
      return matches ? input.value : state;
    }
  }
}

interface Event {
  op: number;
  isCall: boolean;
  time: number;
  prev: Event | null;
  next: Event | null;
  /** For a call: its return event. */
  match: Event | null;
}

/** Checks one key's operations. */
export function checkKey(ops: readonly Operation[], initial: Value = null, maxSteps = 5_000_000): Verdict {
  const key = ops[0]?.key ?? "";
  // Reads whose outcome is unknown constrain nothing: drop them.
  const list = ops.filter((o) => !(o.output === null && o.input.kind === "read"));
  const n = list.length;
  const events: Event[] = [];
  for (let i = 0; i < n; i++) {
    const o = list[i]!;
    const ret = o.output === null ? Number.POSITIVE_INFINITY : o.ret;
    if (!(ret >= o.call)) throw new Error(`operation ${i} returns (${ret}) before it is called (${o.call})`);
    const c: Event = { op: i, isCall: true, time: o.call, prev: null, next: null, match: null };
    const r: Event = { op: i, isCall: false, time: ret, prev: null, next: null, match: null };
    c.match = r;
    events.push(c, r);
  }
  // Time order; at equal times calls first, so touching operations count as concurrent (the lenient reading).
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1));
  const head: Event = { op: -1, isCall: false, time: -1, prev: null, next: null, match: null };
  let last = head;
  for (const e of events) {
    last.next = e;
    e.prev = last;
    last = e;
  }

  const lift = (c: Event) => {
    c.prev!.next = c.next;
    if (c.next) c.next.prev = c.prev;
    const r = c.match!;
    r.prev!.next = r.next;
    if (r.next) r.next.prev = r.prev;
  };
  const unlift = (c: Event) => {
    const r = c.match!;
    r.prev!.next = r;
    if (r.next) r.next.prev = r;
    c.prev!.next = c;
    if (c.next) c.next.prev = c;
  };

  const words = new Uint32Array(Math.ceil(n / 32) || 1);
  // The cache key: the set of placed operations (as two independent 32-bit
  // hashes of the bitset: a full copy per entry would cost memory quadratic
  // in the history) and the register's state. A false match needs both
  // hashes to collide, about one chance in 2^64 per pair of entries.
  const cacheKey = (state: Value) => {
    let a = 0x811c9dc5;
    let b = 0x9747b28c;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      a = Math.imul(a ^ w, 0x01000193);
      b = Math.imul(b ^ w, 0x5bd1e995) ^ (b >>> 15);
    }
    return `${a >>> 0}:${b >>> 0}|${state === null ? "\u0000" : `=${state}`}`;
  };
  const cache = new Set<string>();
  const stack: { call: Event; state: Value }[] = [];
  let state = initial;
  let entry = head.next;
  let steps = 0;
  let deepest = 0;
  // For the report: the operation the search was stuck on when it had placed the most.
  let stuck = -1;
  let stuckDepth = -1;
  while (head.next !== null) {
    if (++steps > maxSteps)
      return { ok: "unknown", key, detail: `gave up after ${maxSteps} search steps (${n} operations)` };
    if (entry === null) break; // cannot happen: a return always ends the list
    if (entry.isCall) {
      const o = list[entry.op]!;
      const next = step(state, o.input, o.output);
      if (next !== undefined) {
        words[entry.op >> 5]! |= 1 << (entry.op & 31);
        const k = cacheKey(next);
        if (!cache.has(k)) {
          cache.add(k);
          stack.push({ call: entry, state });
          state = next;
          lift(entry);
          deepest = Math.max(deepest, stack.length);
          entry = head.next;
          continue;
        }
        words[entry.op >> 5]! &= ~(1 << (entry.op & 31));
      }
      entry = entry.next;
    } else {
      // A return whose operation is not placed yet: it must have happened
      // before this point, and no order tried so far allows it. Backtrack.
      if (stack.length > stuckDepth) {
        stuckDepth = stack.length;
        stuck = entry.op;
      }
      const top = stack.pop();
      if (top === undefined) {
        const culprit = list[stuck]!;
        return {
          ok: false,
          key,
          operations: list,
          detail:
            `no order of the ${n} operations on key ${JSON.stringify(key)} explains what clients saw; ` +
            `at most ${deepest} could be placed in order, and then ${describe(culprit)} (client ${culprit.client}) ` +
            "fits nowhere",
        };
      }
      words[top.call.op >> 5]! &= ~(1 << (top.call.op & 31));
      state = top.state;
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return { ok: true, keys: 1, operations: n };
}

/** Checks a whole history, key by key. */
export function checkHistory(ops: readonly Operation[], maxStepsPerKey = 5_000_000): Verdict {
  const byKey = new Map<string, Operation[]>();
  for (const o of ops) {
    let l = byKey.get(o.key);
    if (l === undefined) byKey.set(o.key, (l = []));
    l.push(o);
  }
  let count = 0;
  for (const l of byKey.values()) {
    const v = checkKey(l, null, maxStepsPerKey);
    if (v.ok !== true) return v;
    count += v.operations;
  }
  return { ok: true, keys: byKey.size, operations: count };
}

export function describe(o: Operation): string {
  const i = o.input;
  const what =
    i.kind === "read"
      ? "read"
      : i.kind === "write"
        ? `write(${JSON.stringify(i.value)})`
        : `cas(${JSON.stringify(i.expected)} -> ${JSON.stringify(i.value)})`;
  const out =
    o.output === null
      ? "unknown"
      : o.output.kind === "read"
        ? JSON.stringify(o.output.value)
        : o.output.kind === "cas"
          ? String(o.output.ok)
          : "ok";
  return `${what} = ${out} [${o.call}, ${o.output === null ? "inf" : o.ret}]`;
}
