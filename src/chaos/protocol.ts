/**
 * What the workload asks of a store client, and how each answer is
 * classified, whatever the protocol. Three adapters implement it: native
 * (src/chaos/native.ts), RESP (resp.ts) and HTTP through the Cerializer
 * (http.ts). Each turns its protocol's replies into one of:
 *
 *   ok         the operation happened, with this result;
 *   failed     an error reply, a timeout or a lost connection: a read
 *              observed nothing; a write may or may not have been applied;
 *   violation  a reply that looks like success but cannot be (a plain SET
 *              answered nil, a 2xx without the fields it must carry, a
 *              status or reply type the operation never has): the store
 *              lied, and the run fails, printing the reply.
 *
 * `failed` carries a short label for the summary (the RESP error prefix,
 * the HTTP status and problem type, the native error code): only counted,
 * never relied on, so the harness does not depend on exact texts.
 */

export type ProtocolName = "native" | "resp" | "http";
export const PROTOCOLS: readonly ProtocolName[] = ["native", "resp", "http"];

/**
 * One operation on one key. Values are unique per write across the whole
 * run, so a version and a value name the same write (a key's versions never
 * repeat: docs/decisions/0007-versions.md), which lets a compare-and-swap on
 * a version be checked as one on a value.
 */
export type Request =
  | { kind: "read" }
  | { kind: "write"; value: string }
  /** Compare-and-swap on the version that `expected` was written with. */
  | { kind: "cas"; expected: string; version: number; value: string }
  /** Write only if absent (native insert, SET NX, If-None-Match: *). */
  | { kind: "insert"; value: string }
  | { kind: "delete" };

export type RequestKind = Request["kind"];

export type Reply =
  | { kind: "read"; value: string | null; version?: number }
  /** `created`: the key was absent before (when the protocol says so). */
  | { kind: "write"; version?: number; created?: boolean }
  | { kind: "cas"; ok: boolean; version?: number }
  | { kind: "delete"; existed: boolean };

export type Outcome =
  | { kind: "ok"; reply: Reply }
  /** `sent` false: certainly never sent (no connection could be made), so certainly not applied. */
  | { kind: "failed"; label: string; sent: boolean }
  | { kind: "violation"; detail: string };

export interface StoreClient {
  run(key: string, request: Request): Promise<Outcome>;
  close(): Promise<void>;
}

/** Opens a client of one protocol to one member (HTTP: to the gateway, whatever the member). */
export interface ProtocolAdapter {
  name: ProtocolName;
  /** The request kinds this protocol can express (RESP has no compare-and-swap on versions). */
  kinds: readonly RequestKind[];
  /**
   * `variant` is the client's index among its protocol's clients: an adapter
   * may vary how it talks by it (RESP: protocol 3 or 2), and `variantName`
   * says how, for the summary.
   */
  open(member: number, timeoutMs: number, variant: number): StoreClient;
  /** A client of the bank workload (src/chaos/bank.ts): transactions over several accounts. */
  openBank(member: number, timeoutMs: number, variant: number): BankClient;
  variantName?(variant: number): string;
}

/**
 * The bank workload's client (src/chaos/bank.ts): accounts are keys under
 * one hash tag, so every transaction is in one partition.
 *
 *   audit     reads every account in one read-only transaction (native and
 *             HTTP: a transaction of gets; RESP: MULTI, GET..., EXEC) and
 *             answers the values in order (null: absent);
 *   transfer  reads two accounts with what makes the write conditional on
 *             them (native and HTTP: a read-only transaction giving values
 *             and versions; RESP: WATCH, then MGET), asks `plan` for their
 *             new values (null: nothing to move), and writes both in one
 *             transaction that holds only if neither changed since the read
 *             (version compares; RESP: MULTI, SET, SET, EXEC under the WATCH).
 */
export interface BankClient {
  audit(keys: readonly string[]): Promise<AuditOutcome>;
  transfer(
    a: string,
    b: string,
    plan: (va: string | null, vb: string | null) => [string, string] | null,
  ): Promise<TransferOutcome>;
  close(): Promise<void>;
}

export type AuditOutcome =
  | { kind: "ok"; values: (string | null)[] }
  | { kind: "failed"; label: string; sent: boolean }
  | { kind: "violation"; detail: string };

export type TransferOutcome =
  /** Both writes applied. */
  | { kind: "committed" }
  /** A compare (or WATCH) failed: nothing applied. */
  | { kind: "conflict" }
  /** plan() asked for nothing: no write was sent. */
  | { kind: "skipped" }
  /** `phase` read: nothing was written; commit: the transfer may or may not have been applied (unless !sent). */
  | { kind: "failed"; phase: "read" | "commit"; label: string; sent: boolean }
  | { kind: "violation"; detail: string };

export const ok = (reply: Reply): Outcome => ({ kind: "ok", reply });
export const failed = (label: string, sent = true): { kind: "failed"; label: string; sent: boolean } => ({
  kind: "failed",
  label,
  sent,
});
export const violation = (detail: string): { kind: "violation"; detail: string } => ({ kind: "violation", detail });

/** A positive safe integer: a version as the store hands them out. */
export function isVersion(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0;
}
