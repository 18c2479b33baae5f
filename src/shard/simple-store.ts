// TEMPORARY stand-in for ShardStore (src/shard/store.ts, in progress):
// same interface over a JS Map, so the node can be brought up end to end.
interface Rec {
  key: Uint8Array;
  value: Uint8Array;
  version: number;
  exp: number;
}
export class ShardStore {
  private readonly index = new Map<string, number>();
  private recs: (Rec | null)[] = [];
  private freeSlots: number[] = [];
  private sweepKeys: string[] = [];
  private sweepAt = 0;
  get size(): number {
    return this.index.size;
  }
  private k(key: Uint8Array): string {
    return Buffer.from(key.buffer, key.byteOffset, key.length).toString("latin1");
  }
  find(key: Uint8Array): number {
    return this.index.get(this.k(key)) ?? -1;
  }
  value(slot: number): Uint8Array {
    return this.recs[slot]!.value;
  }
  key(slot: number): Uint8Array {
    return this.recs[slot]!.key;
  }
  version(slot: number): number {
    return this.recs[slot]!.version;
  }
  expiresAtMs(slot: number): number {
    return this.recs[slot]!.exp;
  }
  set(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): number {
    const k = this.k(key);
    let slot = this.index.get(k);
    if (slot === undefined) {
      slot = this.freeSlots.pop() ?? this.recs.length;
      this.index.set(k, slot);
    }
    this.recs[slot] = { key: key.slice(), value: value.slice(), version, exp: expiresAtMs };
    return slot;
  }
  setExpiry(slot: number, expiresAtMs: number): void {
    this.recs[slot]!.exp = expiresAtMs;
  }
  setVersion(slot: number, version: number): void {
    this.recs[slot]!.version = version;
  }
  deleteSlot(slot: number): void {
    this.index.delete(this.k(this.recs[slot]!.key));
    this.recs[slot] = null;
    this.freeSlots.push(slot);
  }
  memoryBytes(): number {
    let n = 0;
    for (const r of this.recs) if (r) n += r.key.length + r.value.length + 64;
    return n;
  }
  sweepExpired(nowMs: number, maxExamined: number): number {
    if (this.sweepAt >= this.sweepKeys.length) {
      this.sweepKeys = [...this.index.keys()];
      this.sweepAt = 0;
    }
    let removed = 0;
    for (let i = 0; i < maxExamined && this.sweepAt < this.sweepKeys.length; i++) {
      const slot = this.index.get(this.sweepKeys[this.sweepAt++]!);
      if (slot === undefined) continue;
      const e = this.recs[slot]!.exp;
      if (e !== 0 && e <= nowMs) {
        this.deleteSlot(slot);
        removed++;
      }
    }
    return removed;
  }
  scan(cursor: number, count: number, visit: (slot: number) => void): number {
    let i = cursor;
    for (let seen = 0; i < this.recs.length && seen < count; i++) {
      if (this.recs[i]) {
        visit(i);
        seen++;
      }
    }
    return i >= this.recs.length ? 0 : i;
  }
  clear(): void {
    this.index.clear();
    this.recs = [];
    this.freeSlots = [];
  }
}
