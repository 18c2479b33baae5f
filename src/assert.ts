/**
 * Invariant assertions, in the TigerBeetle manner: state what must be true at
 * every state transition, and stop loudly when it is not. A broken invariant
 * means the process holds state we can no longer trust; serving on would risk
 * handing out wrong data, which is worse than being down.
 *
 * Use `assert` for invariants of our own code, never for validating input
 * from the outside world: bad input gets a typed error (see errors.ts).
 */
export class InvariantError extends Error {
  override name = "InvariantError";
}

export function assert(condition: unknown, invariant: string): asserts condition {
  if (!condition) throw new InvariantError(`invariant violated: ${invariant}`);
}

/** For exhaustive switches: the compiler proves this is unreachable. */
export function unreachable(value: never, what: string): never {
  throw new InvariantError(`invariant violated: unreachable ${what}: ${String(value)}`);
}
