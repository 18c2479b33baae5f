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
 * anyone saw. Each such operation could multiply the search by the places
 * it could go; three rules, each proved below to lose no order that
 * matters, keep it near linear (decision 0202): the search ends once every
 * known operation is placed, places an unknown one only where something
 * looks at it next, tries the known ones first, and treats a set with an
 * unknown operation as explored when the same set without it was.
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

/**
 * Zobrist values: two independent 32-bit words per operation, so the set of
 * placed operations hashes incrementally (XOR one in when it is placed, out
 * when it is taken back) at O(1) a step instead of rehashing a bitset. A
 * counter through murmur3's finaliser: fixed, so a verdict never depends on
 * the run.
 */
function zobrist(n: number, salt: number): Uint32Array {
  const z = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    let x = Math.imul(i + 1, 0x9e3779b9) ^ salt;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    z[i] = (x ^ (x >>> 16)) >>> 0;
  }
  return z;
}

/** Checks one key's operations. */
export function checkKey(ops: readonly Operation[], initial: Value = null, maxSteps = 5_000_000): Verdict {
  const key = ops[0]?.key ?? "";
  // Reads whose outcome is unknown constrain nothing: drop them.
  const list = ops.filter((o) => !(o.output === null && o.input.kind === "read"));
  const n = list.length;
  const events: Event[] = [];
  // The operations whose outcome is unknown (writes and CAS: reads are gone).
  const open: number[] = [];
  const isOpen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const o = list[i]!;
    const ret = o.output === null ? Number.POSITIVE_INFINITY : o.ret;
    if (!(ret >= o.call)) throw new Error(`operation ${i} returns (${ret}) before it is called (${o.call})`);
    if (o.output === null) {
      open.push(i);
      isOpen[i] = 1;
    }
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

  // Unknown outcomes, searched without blowing up. An operation of unknown
  // outcome (u) may take effect at any instant after its call, or never;
  // "never" is the same as "after every known operation", where nothing
  // sees it. So the search ends once every known operation is placed, and
  // from any order that explains the history, dropping (sending to the end)
  // a u that changes nothing, or whose value a write replaces at once,
  // gives another that explains it. Repeat until no such u is left: a
  // *plain* order, in which each placed u changes the register and is
  // followed by an operation that looks at it (a read or a CAS). If any
  // order explains the history, a plain one does, so the search tries only
  // plain ones:
  //   - a u is placed only if it changes the register;
  //   - right after a u ("restricted"), no write is placed;
  //   - the known operations before the next return are tried first, the
  //     u only when those are exhausted (`late`), so the branches that
  //     leave a u out finish first, and prune the ones that place it (below).
  // Without these, a u the search places just to try it stays placed for
  // the rest of the history (its set differs from the one without it), and
  // each u multiplies the search by the places it could go: the chaos run's
  // 4,001-operation key with 9 unknown outcomes ran out of a 5M-step budget.

  // The cache key: the set of placed operations, as two independent 32-bit
  // Zobrist hashes (a false match needs both to collide: about one chance in
  // 2^64 per pair of entries; a full copy of the set per entry would cost
  // memory quadratic in the history), the register's state, and whether the
  // node is restricted (it has fewer ways on than the same node unrestricted).
  const za = zobrist(n, 0x3c6ef372);
  const zb = zobrist(n, 0x5be0cd19);
  const placed = new Uint8Array(n);
  let ha = 0;
  let hb = 0;
  const keyOf = (a: number, b: number, state: Value, restricted: boolean) =>
    `${a >>> 0}:${b >>> 0}${restricted ? "r" : ""}|${state === null ? "\u0000" : `=${state}`}`;
  // Every node entered. Those not on the current path (`onPath`) are
  // finished, and a finished node had no way to the end: had it had one,
  // the search would have stopped there with "ok".
  const cache = new Set<string>();
  const onPath = new Set<string>();
  // Placing a u never opens a way that leaving it out did not (a way on from
  // S + u is a way on from S, with u sent to the end): if the unrestricted
  // (S, s) is finished, so is (S + u, s).
  const dominated = (a: number, b: number, state: Value) => {
    for (const u of open) {
      if (placed[u] === 0) continue;
      const k = keyOf(a ^ za[u]!, b ^ zb[u]!, state, false);
      if (cache.has(k) && !onPath.has(k)) return true;
    }
    return false;
  };
  const stack: { call: Event; state: Value; key: string }[] = [];
  let state = initial;
  let entry = head.next;
  let late = false;
  let restricted = false;
  let knownLeft = n - open.length;
  let steps = 0;
  let deepest = 0;
  // For the report: the operation the search was stuck on when it had placed the most.
  let stuck = -1;
  let stuckDepth = -1;
  while (knownLeft > 0) {
    if (++steps > maxSteps)
      return { ok: "unknown", key, detail: `gave up after ${maxSteps} search steps (${n} operations)` };
    if (entry === null) break; // cannot happen: a known operation's return is still in the list
    if (entry.isCall) {
      const op = entry.op;
      const o = list[op]!;
      const unknown = isOpen[op] === 1;
      if (unknown === late && !(restricted && o.input.kind === "write")) {
        const next = step(state, o.input, o.output);
        if (next !== undefined && !(unknown && next === state)) {
          const a = ha ^ za[op]!;
          const b = hb ^ zb[op]!;
          const k = keyOf(a, b, next, unknown);
          placed[op] = 1;
          if (!cache.has(k) && !(open.length > 0 && dominated(a, b, next))) {
            cache.add(k);
            onPath.add(k);
            stack.push({ call: entry, state, key: k });
            state = next;
            ha = a;
            hb = b;
            if (!unknown) knownLeft--;
            lift(entry);
            deepest = Math.max(deepest, stack.length);
            entry = head.next;
            late = false;
            restricted = unknown;
            continue;
          }
          placed[op] = 0;
        }
      }
      entry = entry.next;
    } else if (!late && open.length > 0) {
      // Every known operation before this return tried: now the unknown ones.
      late = true;
      entry = head.next;
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
      const op = top.call.op;
      onPath.delete(top.key);
      placed[op] = 0;
      ha ^= za[op]!;
      hb ^= zb[op]!;
      state = top.state;
      unlift(top.call);
      entry = top.call.next;
      late = isOpen[op] === 1;
      if (!late) knownLeft++;
      const below = stack[stack.length - 1];
      restricted = below !== undefined && isOpen[below.call.op] === 1;
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
