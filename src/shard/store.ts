/**
 * The shard's private map: key -> {value, version, expiry}, built to be lean.
 *
 * A JS Map<string, {value: Buffer, ...}> costs ~300 bytes per small entry
 * (a string, an object, a Buffer and its ArrayBuffer, all with headers, all
 * traced by the GC). Redis 7 spends about 170 bytes per 16-byte key with a
 * 64-byte value. This store keeps every record in large pages of raw bytes
 * and indexes them with two typed arrays, so a small entry costs its bytes
 * plus 16 bytes of header (24 with a TTL) plus the index, and the GC sees a few hundred
 * big buffers instead of millions of objects (decision 0050).
 *
 * Records. `[u32 keyBytes | HAS_EXPIRY][u32 valueBytes][f64 version]
 * ([f64 expiresAtMs])[key][value]`, 8-byte aligned: the expiry is there only
 * when the key has a TTL (the top bit of the first word says so), so a key
 * without one, most keys of most stores, does not carry 8 bytes of zero
 * (decision 0052). Setting a TTL on a key without one moves its record to
 * the next size class, as a longer value would. A record lives in a slab page (1 MiB) of
 * its size class (multiples of 8 bytes up to 256, then steps of ~12.5%),
 * memcached-style: a page holds records of one class only, and a freed
 * record goes on its class's free list for the next record of that class.
 * Records over SLAB_MAX_RECORD_BYTES get a buffer of their own.
 *
 * Index. Open addressing with linear probing over `slots` (the record
 * handle, or EMPTY / TOMBSTONE) and `hashes` (the key's 32-bit hash, to skip
 * most key comparisons and to rehash without touching records). Deletion
 * leaves a tombstone, so entries never move except when the table is
 * rebuilt: slot numbers stay valid for the scan cursor.
 *
 * Expiry list. Keys with a TTL are also listed in `ttlSlots` (their slot
 * numbers, in no order), and `ttlPos[slot]` is that slot's position in the
 * list + 1 (0: no TTL), so adding and removing is O(1) without allocation
 * (a removal moves the list's last entry into the hole). The active expiry
 * sweep walks this list, never the whole index: its pace depends on how
 * many keys have a TTL, not on how many keys or empty slots there are
 * (Redis keeps its `expires` dict for the same reason). Cost: 4 bytes per
 * index slot and 4 per key with a TTL, and only while some key has a TTL:
 * `ttlPos` is allocated by the first TTL and dropped by the first rebuild
 * (or clear) that finds none, so a store without TTLs (a cache loaded with
 * plain SETs) does not pay 4 bytes per slot for a list it never uses:
 * 8 MB of 130 at 1M keys (decision 0291).
 *
 * A "slot" in this API is a position in the index. Views returned by key()
 * and value() point into page memory and are valid until the next mutation.
 */
import { assert } from "../assert.js";

export interface StoreOptions {
  /** Keys to size the index for; it grows by itself. */
  initialCapacity?: number;
}

const PAGE_BYTES = 1 << 20;
const PAGE_SHIFT = 17; // handle = page << 17 | (offset / 8): 2^17 * 8 = 1 MiB
const MAX_PAGES = (1 << 14) - 1; // 16 GiB of slab pages per shard
/** Records larger than this get their own buffer instead of a slab slot. */
export const SLAB_MAX_RECORD_BYTES = 64 * 1024;
/** A record's header without an expiry, and with one (HAS_EXPIRY). */
const HEADER_BYTES = 16;
const EXPIRY_HEADER_BYTES = 24;
/** In a record's first word: its key has a TTL, and its expiry follows the version. The rest is the key's length. */
const HAS_EXPIRY = 0x80000000;
const KEY_BYTES = 0x7fffffff;

const EMPTY = 0;
const TOMBSTONE = 0x7fffffff;
/** Slot values: EMPTY, TOMBSTONE, slab handle + 1 (>= 1), or -(large index + 1). */

const MAX_LOAD = 0.75;

/** `ttlPos` while no key has a TTL: no per-slot positions are kept (see "Expiry list"). */
const NO_TTL_POS = new Int32Array(0);

// Size classes: 8-byte steps to 256 bytes, then ~12.5% steps to the slab limit.
const CLASS_SIZES: number[] = [];
for (let s = 32; s <= 256; s += 8) CLASS_SIZES.push(s);
for (let s = 256; s < SLAB_MAX_RECORD_BYTES; ) {
  s = Math.min(SLAB_MAX_RECORD_BYTES, (Math.ceil((s * 1.125) / 8) * 8) | 0);
  CLASS_SIZES.push(s);
}
/** Class index by record size / 8, for sizes up to the slab limit. */
const CLASS_OF = new Uint8Array(SLAB_MAX_RECORD_BYTES / 8 + 1);
for (let size8 = 0, c = 0; size8 <= SLAB_MAX_RECORD_BYTES / 8; size8++) {
  while (CLASS_SIZES[c]! < size8 * 8) c++;
  CLASS_OF[size8] = c;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** The header of a record: with its expiry when there is one. */
function headerFor(expiresAtMs: number): number {
  return expiresAtMs !== 0 ? EXPIRY_HEADER_BYTES : HEADER_BYTES;
}

/** The header of a record, from its first word. */
function headerOf(word: number): number {
  return word >= HAS_EXPIRY ? EXPIRY_HEADER_BYTES : HEADER_BYTES;
}

/**
 * FNV-1a over the key's bytes, finished with murmur3's fmix32 so low bits
 * (which pick the slot) depend on every byte. Independent of the xxHash32
 * that routes keys to shards (decision 0002).
 */
export function storeHash(key: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class SizeClass {
  readonly size: number;
  /** Page currently being carved, and the next free offset in it. */
  page = -1;
  next = PAGE_BYTES;
  free: Int32Array = new Int32Array(64);
  freeCount = 0;
  constructor(size: number) {
    this.size = size;
  }
}

export class ShardStore {
  private slots: Int32Array;
  private hashes: Uint32Array;
  private mask: number;
  private count = 0;
  private tombstones = 0;
  /** Bumped at every rebuild of the index: scan cursors from before a rebuild start over. */
  private epoch = 0;

  /** Slots of the keys with a TTL, [0, ttlCount); see "Expiry list" above. */
  private ttlSlots = new Int32Array(64);
  private ttlCount = 0;
  /**
   * Per index slot: its position in ttlSlots + 1, or 0 when the key has no TTL.
   * Empty (NO_TTL_POS) while no key has a TTL; else as long as `slots`.
   */
  private ttlPos: Int32Array = NO_TTL_POS;
  /** The sweep's next position in ttlSlots; it walks downwards (see sweepExpired). */
  private ttlCursor = -1;

  private readonly pagesU8: Uint8Array[] = [];
  private readonly pagesU32: Uint32Array[] = [];
  private readonly pagesF64: Float64Array[] = [];
  private readonly classes = CLASS_SIZES.map((s) => new SizeClass(s));

  private readonly largeU8: (Uint8Array | null)[] = [];
  private readonly largeU32: (Uint32Array | null)[] = [];
  private readonly largeF64: (Float64Array | null)[] = [];
  private readonly largeFree: number[] = [];
  private largeBytes = 0;

  constructor(options: StoreOptions = {}) {
    let capacity = 1024;
    while (capacity * MAX_LOAD < (options.initialCapacity ?? 0)) capacity *= 2;
    this.slots = new Int32Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.mask = capacity - 1;
  }

  get size(): number {
    return this.count;
  }

  // ---- records -------------------------------------------------------

  /** Where a slot's record lives: sets rU8/rU32/rF64 and the byte offset rAt. */
  private rU8!: Uint8Array;
  private rU32!: Uint32Array;
  private rF64!: Float64Array;
  private rAt = 0;

  private locate(slot: number): void {
    this.locateHandle(this.slots[slot]!);
  }

  private locateHandle(h: number): void {
    assert(h !== EMPTY && h !== TOMBSTONE, "a slot handed out holds a record");
    if (h > 0) {
      const handle = h - 1;
      const page = handle >>> PAGE_SHIFT;
      this.rU8 = this.pagesU8[page]!;
      this.rU32 = this.pagesU32[page]!;
      this.rF64 = this.pagesF64[page]!;
      this.rAt = (handle & ((1 << PAGE_SHIFT) - 1)) * 8;
    } else {
      const i = -h - 1;
      this.rU8 = this.largeU8[i]!;
      this.rU32 = this.largeU32[i]!;
      this.rF64 = this.largeF64[i]!;
      this.rAt = 0;
    }
  }

  /** Allocates a record of `bytes` and returns its slot value (handle + 1, or negative for large). */
  private allocate(bytes: number): number {
    if (bytes > SLAB_MAX_RECORD_BYTES) {
      const buf = new ArrayBuffer(align8(bytes));
      let i = this.largeFree.pop();
      if (i === undefined) {
        i = this.largeU8.length;
        this.largeU8.push(null);
        this.largeU32.push(null);
        this.largeF64.push(null);
      }
      this.largeU8[i] = new Uint8Array(buf);
      this.largeU32[i] = new Uint32Array(buf);
      this.largeF64[i] = new Float64Array(buf);
      this.largeBytes += buf.byteLength;
      return -(i + 1);
    }
    const cls = this.classes[CLASS_OF[align8(bytes) / 8]!]!;
    if (cls.freeCount > 0) return cls.free[--cls.freeCount]! + 1;
    if (cls.next + cls.size > PAGE_BYTES) {
      assert(this.pagesU8.length < MAX_PAGES, "slab pages within the handle's range");
      const buf = new ArrayBuffer(PAGE_BYTES);
      cls.page = this.pagesU8.length;
      cls.next = 0;
      this.pagesU8.push(new Uint8Array(buf));
      this.pagesU32.push(new Uint32Array(buf));
      this.pagesF64.push(new Float64Array(buf));
    }
    const handle = (cls.page << PAGE_SHIFT) | (cls.next / 8);
    cls.next += cls.size;
    return handle + 1;
  }

  private release(slotValue: number): void {
    if (slotValue < 0) {
      const i = -slotValue - 1;
      this.largeBytes -= this.largeU8[i]!.byteLength;
      this.largeU8[i] = null;
      this.largeU32[i] = null;
      this.largeF64[i] = null;
      this.largeFree.push(i);
      return;
    }
    const handle = slotValue - 1;
    const u32 = this.pagesU32[handle >>> PAGE_SHIFT]!;
    const at = (handle & ((1 << PAGE_SHIFT) - 1)) * 8;
    const word = u32[at / 4]!;
    const bytes = headerOf(word) + (word & KEY_BYTES) + u32[at / 4 + 1]!;
    const cls = this.classes[CLASS_OF[align8(bytes) / 8]!]!;
    if (cls.freeCount === cls.free.length) {
      const grown = new Int32Array(cls.free.length * 2);
      grown.set(cls.free);
      cls.free = grown;
    }
    cls.free[cls.freeCount++] = handle;
  }

  /**
   * Whether a record of `bytes` can reuse the storage of the located record
   * (locateHandle(slotValue) called; `oldBytes` its size): a slab record of
   * the same size class, or a large one of the same aligned size.
   */
  private fitsLocated(slotValue: number, oldBytes: number, bytes: number): boolean {
    if (slotValue < 0) return bytes > SLAB_MAX_RECORD_BYTES && align8(bytes) === this.rU8.length;
    if (bytes > SLAB_MAX_RECORD_BYTES) return false;
    return CLASS_OF[align8(oldBytes) / 8] === CLASS_OF[align8(bytes) / 8];
  }

  // ---- index ---------------------------------------------------------

  find(key: Uint8Array): number {
    const hash = storeHash(key);
    const slots = this.slots;
    const hashes = this.hashes;
    for (let i = hash & this.mask; ; i = (i + 1) & this.mask) {
      const s = slots[i]!;
      if (s === EMPTY) return -1;
      if (s !== TOMBSTONE && hashes[i] === hash && this.keyEquals(i, key)) return i;
    }
  }

  private keyEquals(slot: number, key: Uint8Array): boolean {
    this.locate(slot);
    const u8 = this.rU8;
    const at = this.rAt;
    const word = this.rU32[at / 4]!;
    if ((word & KEY_BYTES) !== key.length) return false;
    const k = at + headerOf(word);
    for (let j = 0; j < key.length; j++) if (u8[k + j] !== key[j]) return false;
    return true;
  }

  value(slot: number): Uint8Array {
    this.locate(slot);
    const at = this.rAt;
    const word = this.rU32[at / 4]!;
    const start = at + headerOf(word) + (word & KEY_BYTES);
    return this.rU8.subarray(start, start + this.rU32[at / 4 + 1]!);
  }

  key(slot: number): Uint8Array {
    this.locate(slot);
    const at = this.rAt;
    const word = this.rU32[at / 4]!;
    const start = at + headerOf(word);
    return this.rU8.subarray(start, start + (word & KEY_BYTES));
  }

  version(slot: number): number {
    this.locate(slot);
    return this.rF64[this.rAt / 8 + 1]!;
  }

  expiresAtMs(slot: number): number {
    this.locate(slot);
    return this.rU32[this.rAt / 4]! >= HAS_EXPIRY ? this.rF64[this.rAt / 8 + 2]! : 0;
  }

  /**
   * Sets (or with 0 removes) a key's expiry. A record with an expiry field
   * keeps it when the TTL goes (PERSIST: 0 there reads as none) until its
   * next write; one without gets it by moving, in place when the 8 bytes
   * keep it in its size class, else to a record of the next class.
   */
  setExpiry(slot: number, expiresAtMs: number): void {
    const s = this.slots[slot]!;
    this.locateHandle(s);
    const at = this.rAt;
    const word = this.rU32[at / 4]!;
    if (word < HAS_EXPIRY && expiresAtMs !== 0) {
      const keyBytes = word & KEY_BYTES;
      const dataBytes = keyBytes + this.rU32[at / 4 + 1]!;
      if (this.fitsLocated(s, HEADER_BYTES + dataBytes, EXPIRY_HEADER_BYTES + dataBytes)) {
        this.rU8.copyWithin(at + EXPIRY_HEADER_BYTES, at + HEADER_BYTES, at + HEADER_BYTES + dataBytes);
        this.rU32[at / 4] = word | HAS_EXPIRY;
      } else {
        // The old record's bytes stay readable until it is released, after the new one is written.
        const key = this.rU8.subarray(at + HEADER_BYTES, at + HEADER_BYTES + keyBytes);
        const value = this.rU8.subarray(at + HEADER_BYTES + keyBytes, at + HEADER_BYTES + dataBytes);
        const fresh = this.allocate(EXPIRY_HEADER_BYTES + dataBytes);
        this.write(fresh, key, value, this.rF64[at / 8 + 1]!, expiresAtMs);
        this.release(s);
        this.slots[slot] = fresh;
      }
      this.locateHandle(this.slots[slot]!);
    }
    if (this.rU32[this.rAt / 4]! >= HAS_EXPIRY) this.rF64[this.rAt / 8 + 2] = expiresAtMs;
    this.trackExpiry(slot, expiresAtMs);
  }

  /** Keys with a TTL (the expiry list's length). */
  get ttlKeys(): number {
    return this.ttlCount;
  }

  /** Keeps the expiry list in step with a slot's expiry: listed iff it is not 0. */
  private trackExpiry(slot: number, expiresAtMs: number): void {
    if (expiresAtMs !== 0) {
      if (this.ttlPos === NO_TTL_POS) this.ttlPos = new Int32Array(this.slots.length);
      if (this.ttlPos[slot] !== 0) return;
      if (this.ttlCount === this.ttlSlots.length) {
        const grown = new Int32Array(this.ttlSlots.length * 2);
        grown.set(this.ttlSlots);
        this.ttlSlots = grown;
      }
      this.ttlSlots[this.ttlCount++] = slot;
      this.ttlPos[slot] = this.ttlCount;
    } else if (this.ttlCount !== 0 && this.ttlPos[slot] !== 0) {
      this.unlist(slot);
    }
  }

  /** Removes a slot from the expiry list: the last entry moves into its place. */
  private unlist(slot: number): void {
    const at = this.ttlPos[slot]! - 1;
    const last = this.ttlSlots[--this.ttlCount]!;
    this.ttlSlots[at] = last;
    this.ttlPos[last] = at + 1;
    this.ttlPos[slot] = 0;
  }

  setVersion(slot: number, version: number): void {
    this.locate(slot);
    this.rF64[this.rAt / 8 + 1] = version;
  }

  private write(slotValue: number, key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void {
    this.locateHandle(slotValue);
    const at = this.rAt;
    const header = headerFor(expiresAtMs);
    this.rU32[at / 4] = header === HEADER_BYTES ? key.length : key.length | HAS_EXPIRY;
    this.rU32[at / 4 + 1] = value.length;
    this.rF64[at / 8 + 1] = version;
    if (header !== HEADER_BYTES) this.rF64[at / 8 + 2] = expiresAtMs;
    this.rU8.set(key, at + header);
    this.rU8.set(value, at + header + key.length);
  }

  /**
   * Replaces the record of the live key at `slot` (as find() returned it,
   * nothing changed since): in place when it keeps its size class. A write
   * that knows its slot already (a SET after its lookup) skips a second probe.
   */
  overwrite(slot: number, key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void {
    const s = this.slots[slot]!;
    assert(s !== EMPTY && s !== TOMBSTONE, "overwrite names a live record");
    const header = headerFor(expiresAtMs);
    const bytes = header + key.length + value.length;
    // One look at the old record: its size, and whether it is listed for the sweep (iff its expiry is
    // not 0: the header says so without a look at the list's position array, a cache miss per write).
    this.locateHandle(s);
    const at = this.rAt;
    const word = this.rU32[at / 4]!;
    const oldHeader = headerOf(word);
    const hadExpiry = oldHeader !== HEADER_BYTES && this.rF64[at / 8 + 2] !== 0;
    if (oldHeader === header && this.fitsLocated(s, oldHeader + (word & KEY_BYTES) + this.rU32[at / 4 + 1]!, bytes)) {
      // In place, in the same layout. The key stays as it is: it is this key (find() matched it), so only
      // the rest is written.
      this.rU32[at / 4 + 1] = value.length;
      this.rF64[at / 8 + 1] = version;
      if (header !== HEADER_BYTES) this.rF64[at / 8 + 2] = expiresAtMs;
      this.rU8.set(value, at + header + key.length);
    } else {
      const fresh = this.allocate(bytes);
      this.release(s);
      this.slots[slot] = fresh;
      this.write(fresh, key, value, version, expiresAtMs);
    }
    if (hadExpiry || expiresAtMs !== 0) this.trackExpiry(slot, expiresAtMs);
  }

  set(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): number {
    assert(key.length > 0, "keys are not empty (validated by the protocols)");
    const bytes = headerFor(expiresAtMs) + key.length + value.length;
    const hash = storeHash(key);
    const slots = this.slots;
    let firstFree = -1;
    let i = hash & this.mask;
    for (; ; i = (i + 1) & this.mask) {
      const s = slots[i]!;
      if (s === EMPTY) break;
      if (s === TOMBSTONE) {
        if (firstFree < 0) firstFree = i;
        continue;
      }
      if (this.hashes[i] === hash && this.keyEquals(i, key)) {
        this.overwrite(i, key, value, version, expiresAtMs);
        return i;
      }
    }
    if (this.count + this.tombstones + 1 > this.slots.length * MAX_LOAD) {
      this.rebuild();
      return this.set(key, value, version, expiresAtMs);
    }
    const target = firstFree >= 0 ? firstFree : i;
    if (firstFree >= 0) this.tombstones--;
    const handle = this.allocate(bytes);
    slots[target] = handle;
    this.hashes[target] = hash;
    this.count++;
    this.write(handle, key, value, version, expiresAtMs);
    if (expiresAtMs !== 0) this.trackExpiry(target, expiresAtMs);
    return target;
  }

  deleteSlot(slot: number): void {
    const s = this.slots[slot]!;
    assert(s !== EMPTY && s !== TOMBSTONE, "deleteSlot names a live record");
    this.release(s);
    if (this.ttlCount !== 0 && this.ttlPos[slot] !== 0) this.unlist(slot);
    this.slots[slot] = TOMBSTONE;
    this.count--;
    this.tombstones++;
  }

  /**
   * Rebuilds the index: doubles it when live keys need the room, else
   * rebuilds at the same size to clear tombstones. Records do not move.
   * A full rebuild pauses this shard for O(keys): 69 ms when the index
   * doubles at 786,432 keys, 135 ms at 1,572,864 here (measured 2026-12-04;
   * incremental rehashing, Redis-style, would spread it out: not built). It
   * walks the old index in slot order and reads no record: the full hash of
   * each key is kept beside its slot for this (docs/benchmarks.md, "Memory":
   * a byte of it instead saved 6 MiB at 1M keys and made this pause 2-4x).
   */
  private rebuild(): void {
    const oldSlots = this.slots;
    const oldHashes = this.hashes;
    const oldTtlPos = this.ttlPos;
    let capacity = oldSlots.length;
    if (this.count + 1 > capacity * MAX_LOAD * 0.5) capacity *= 2;
    this.slots = new Int32Array(capacity);
    this.hashes = new Uint32Array(capacity);
    // No key with a TTL: the positions go (and come back with the next TTL).
    this.ttlPos = this.ttlCount === 0 ? NO_TTL_POS : new Int32Array(capacity);
    this.mask = capacity - 1;
    this.tombstones = 0;
    this.epoch++;
    for (let j = 0; j < oldSlots.length; j++) {
      const s = oldSlots[j]!;
      if (s === EMPTY || s === TOMBSTONE) continue;
      const hash = oldHashes[j]!;
      let i = hash & this.mask;
      while (this.slots[i] !== EMPTY) i = (i + 1) & this.mask;
      this.slots[i] = s;
      this.hashes[i] = hash;
      // The expiry list keeps its order (and the sweep its place in it); only slot numbers change.
      const pos = this.ttlCount === 0 ? 0 : oldTtlPos[j]!;
      if (pos !== 0) {
        this.ttlSlots[pos - 1] = i;
        this.ttlPos[i] = pos;
      }
    }
  }

  /** Changes at every rebuild of the index (slot numbers then change): a walk by slot must start over. */
  get indexEpoch(): number {
    return this.epoch;
  }

  memoryBytes(): number {
    return (
      this.slots.byteLength +
      this.hashes.byteLength +
      this.ttlPos.byteLength +
      this.ttlSlots.byteLength +
      this.pagesU8.length * PAGE_BYTES +
      this.largeBytes
    );
  }

  /**
   * One step of the active expiry sweep: examines the next
   * min(maxExamined, ttlKeys) keys of the expiry list and removes the expired
   * ones; returns how many it removed. Keys without a TTL cost nothing.
   *
   * The cursor walks the list downwards and wraps to the end (a new pass).
   * Downwards because removal fills a hole with the list's last entry: an
   * entry not yet examined in this pass lies at or below the cursor and
   * never moves above it, so every key listed when a pass starts is examined
   * in that pass; keys listed later (appended at the end) wait for the next.
   * Hence each key with a TTL is examined within ttlKeys positions of cursor
   * travel (2 * ttlKeys while keys are being added), and when ttlKeys <=
   * maxExamined, one call examines every key.
   */
  sweepExpired(nowMs: number, maxExamined: number, onExpired?: (slot: number) => void): number {
    let removed = 0;
    const n = Math.min(maxExamined, this.ttlCount);
    for (let i = 0; i < n; i++) {
      if (this.ttlCursor < 0 || this.ttlCursor >= this.ttlCount) this.ttlCursor = this.ttlCount - 1;
      const slot = this.ttlSlots[this.ttlCursor]!;
      const exp = this.expiresAtMs(slot);
      if (exp <= nowMs) {
        onExpired?.(slot);
        this.deleteSlot(slot);
        removed++;
      }
      this.ttlCursor--;
    }
    return removed;
  }

  /**
   * Cursor iteration over index positions. The cursor carries the index's
   * epoch (mod 4) in its top bits: a cursor from before a rebuild restarts
   * the walk, so a key present for the whole scan is returned at least once
   * (possibly twice), as Redis promises.
   */
  scan(cursor: number, count: number, visit: (slot: number) => void): number {
    const epochBits = (this.epoch & 3) * 2 ** 30;
    let pos = cursor === 0 ? 0 : cursor % 2 ** 30;
    if (cursor !== 0 && cursor - (cursor % 2 ** 30) !== epochBits) pos = 0;
    const slots = this.slots;
    let seen = 0;
    while (pos < slots.length && seen < count) {
      const s = slots[pos]!;
      if (s !== EMPTY && s !== TOMBSTONE) {
        visit(pos);
        seen++;
      }
      pos++;
    }
    return pos >= slots.length ? 0 : epochBits + pos;
  }

  clear(): void {
    this.slots = new Int32Array(1024);
    this.hashes = new Uint32Array(1024);
    this.ttlPos = NO_TTL_POS;
    this.ttlSlots = new Int32Array(64);
    this.ttlCount = 0;
    this.ttlCursor = -1;
    this.mask = 1023;
    this.count = 0;
    this.tombstones = 0;
    this.epoch++;
    this.pagesU8.length = 0;
    this.pagesU32.length = 0;
    this.pagesF64.length = 0;
    for (const c of this.classes) {
      c.page = -1;
      c.next = PAGE_BYTES;
      c.freeCount = 0;
    }
    this.largeU8.length = 0;
    this.largeU32.length = 0;
    this.largeF64.length = 0;
    this.largeFree.length = 0;
    this.largeBytes = 0;
  }
}
