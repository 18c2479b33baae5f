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
 * Rebuild. When live keys and tombstones pass START_LOAD (0.7) of the index,
 * a new index is built beside it a few slots at a time (a "shadow build",
 * decision 0053): doubled when live keys need the room, else of the same
 * size to clear tombstones. The old index stays the only one anything reads
 * or names (find, scan, the expiry list, slot numbers handed out) until the
 * build has copied every old slot; then the new one replaces it at once and
 * the epoch changes, as after the one-go rebuild this replaced. Each insert
 * of a new key copies STEP_SLOTS (64) old slots, and an idle owner may call
 * rebuildStep(); writes to old slots already copied are mirrored into the
 * new index. Details at startBuild().
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

/** The index is never fuller than this (live keys + tombstones): past it, probes grow long. */
const MAX_LOAD = 0.75;
/** Past this load an insert starts an incremental build of the next index (see startBuild). */
const START_LOAD = 0.7;
/** Old slots an insert of a new key copies into the index being built: the bound on its extra work. */
export const STEP_SLOTS = 64;
// A build must end before the old index reaches MAX_LOAD: it starts at START_LOAD, each insert that
// fills a slot copies STEP_SLOTS, so capacity / STEP_SLOTS inserts finish it, and (MAX_LOAD - START_LOAD)
// * capacity inserts are allowed before MAX_LOAD: 0.05 * 64 = 3.2 times as many as needed.
assert(
  (MAX_LOAD - START_LOAD) * STEP_SLOTS >= 1,
  "an incremental build finishes before the old index fills: (MAX_LOAD - START_LOAD) * STEP_SLOTS >= 1",
);

/** `ttlPos` while no key has a TTL: no per-slot positions are kept (see "Expiry list"). */
const NO_TTL_POS = new Int32Array(0);
/** The build's arrays while no build runs (see startBuild). */
const NO_BUILD_SLOTS = new Int32Array(0);
const NO_BUILD_HASHES = new Uint32Array(0);

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

  // The incremental build (see startBuild); NO_BUILD_* while none runs.
  /** The index being built: its slots and hashes (the old ones, above, stay authoritative meanwhile). */
  private nextSlots: Int32Array = NO_BUILD_SLOTS;
  private nextHashes: Uint32Array = NO_BUILD_HASHES;
  /** Per old slot below `copied`: its slot in the new index when it holds a key, else -1. */
  private moved: Int32Array = NO_BUILD_SLOTS;
  /** Old slots [0, copied) are in the new index (and kept in step with the old one); 0 while no build runs. */
  private copied = 0;
  /** Tombstones in the new index: keys copied, then deleted during the build. */
  private nextTombstones = 0;
  /**
   * The expiry list as the new index will name it, kept as the build goes so
   * the swap need not translate it: for each list position whose old slot is
   * copied, `nextTtlSlots` holds its new slot and `nextTtlPos` (per new slot)
   * the position + 1. Positions of old slots not yet copied are filled in
   * when the copier reaches them. NO_TTL_POS until a key with a TTL is copied.
   */
  private nextTtlPos: Int32Array = NO_TTL_POS;
  private nextTtlSlots: Int32Array = NO_BUILD_SLOTS;
  /** Old slots copied by builds since this store was made (a statistic; tests check the bound per insert). */
  private slotsCopiedTotal = 0;

  /** Slots of the keys with a TTL, [0, ttlCount); see "Expiry list" above. */
  private ttlSlots: Int32Array = new Int32Array(64);
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
        this.setHandle(slot, fresh);
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
        if (this.moved !== NO_BUILD_SLOTS) {
          const next = new Int32Array(grown.length);
          next.set(this.nextTtlSlots);
          this.nextTtlSlots = next;
        }
      }
      this.ttlSlots[this.ttlCount++] = slot;
      this.ttlPos[slot] = this.ttlCount;
      if (slot < this.copied) this.listNext(this.ttlCount - 1, this.copiedTo(slot));
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
    // Mirrored for the index being built (see nextTtlPos), in the same order: `last` may be `slot`.
    if (last < this.copied) this.listNext(at, this.copiedTo(last));
    if (slot < this.copied) this.nextTtlPos[this.copiedTo(slot)] = 0;
  }

  /** During a build: list position `k` holds the key now at new slot `to` (see nextTtlPos). */
  private listNext(k: number, to: number): void {
    if (this.nextTtlPos === NO_TTL_POS) this.nextTtlPos = new Int32Array(this.nextSlots.length);
    this.nextTtlSlots[k] = to;
    this.nextTtlPos[to] = k + 1;
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
      this.setHandle(slot, fresh);
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
    const load = this.count + this.tombstones + 1;
    if (load > slots.length * START_LOAD) {
      if (this.moved === NO_BUILD_SLOTS) this.startBuild();
      if (load > slots.length * MAX_LOAD) {
        // Not reached: a build started at START_LOAD ends within capacity / STEP_SLOTS inserts, well before
        // MAX_LOAD (see the assert by STEP_SLOTS). Should the arithmetic ever change, the store stays correct
        // and only this insert pays: the build is finished in one go, and the key goes into the new index.
        this.copyStep(Number.POSITIVE_INFINITY);
        return this.set(key, value, version, expiresAtMs);
      }
    }
    const target = firstFree >= 0 ? firstFree : i;
    if (firstFree >= 0) this.tombstones--;
    const handle = this.allocate(bytes);
    slots[target] = handle;
    this.hashes[target] = hash;
    this.count++;
    if (target < this.copied) this.moved[target] = this.place(handle, hash);
    this.write(handle, key, value, version, expiresAtMs);
    if (expiresAtMs !== 0) this.trackExpiry(target, expiresAtMs);
    if (this.moved !== NO_BUILD_SLOTS) {
      // The build's step for this insert. Should it end the build, the key has moved with every other.
      const moved = this.moved;
      this.copyStep(STEP_SLOTS);
      if (this.moved === NO_BUILD_SLOTS) return moved[target]!;
    }
    return target;
  }

  /** Slot `slot` (live) now holds the record `handle`: in the index being built too, once copied. */
  private setHandle(slot: number, handle: number): void {
    this.slots[slot] = handle;
    if (slot < this.copied) this.nextSlots[this.copiedTo(slot)] = handle;
  }

  /** Where old slot `slot` (live, below `copied`) is in the index being built. */
  private copiedTo(slot: number): number {
    const to = this.moved[slot]!;
    assert(to >= 0, "a live old slot already copied has its place in the new index");
    return to;
  }

  deleteSlot(slot: number): void {
    const s = this.slots[slot]!;
    assert(s !== EMPTY && s !== TOMBSTONE, "deleteSlot names a live record");
    this.release(s);
    if (this.ttlCount !== 0 && this.ttlPos[slot] !== 0) this.unlist(slot);
    this.slots[slot] = TOMBSTONE;
    this.count--;
    this.tombstones++;
    if (slot < this.copied) {
      this.nextSlots[this.copiedTo(slot)] = TOMBSTONE;
      this.nextTombstones++;
    }
  }

  /**
   * Starts an incremental rebuild of the index: a new one, doubled when live
   * keys need the room, else of the same size to clear tombstones. Records
   * do not move. Until the build ends (swapBuild) the old index is the only
   * one read, written and named by slot numbers; copyStep copies the next
   * old slots into the new one by their stored hashes, reading no record
   * (the full hash of each key is kept beside its slot for this:
   * docs/benchmarks.md, "Memory"), and every write to an old slot already
   * copied is mirrored: a new key (set), a record that moved (setHandle), a
   * delete (deleteSlot). Old slots not yet copied need nothing: the copier
   * reads them as they are when it gets there.
   *
   * The one-go rebuild this replaced paused the shard for O(capacity): 69 ms
   * when the index doubled at 786,432 keys, 135 ms at 1,572,864 (measured
   * 2026-12-04). Now an insert copies at most STEP_SLOTS old slots, and the
   * build starts at START_LOAD so that it ends, by inserts alone, long before
   * the old index reaches MAX_LOAD (capacity / STEP_SLOTS inserts of the
   * (MAX_LOAD - START_LOAD) * capacity it has room for); the sweep's tick
   * (src/shard/sweep.ts) takes a step too, so a build ends while the shard
   * is idle. The expiry list is kept under the new slot numbers as the build
   * goes (nextTtlPos), so the swap is O(1) however many keys have a TTL.
   * Left in one operation: allocating the new arrays here (zeroed memory the
   * OS maps lazily). Memory: while a build runs both indexes exist, plus
   * `moved` (4 bytes per old slot) and, with keys with a TTL, the new index's
   * list positions and the list under new numbers; before, both indexes
   * existed for the length of a one-go rebuild.
   */
  private startBuild(): void {
    const oldCapacity = this.slots.length;
    let capacity = oldCapacity;
    if (this.count + 1 > capacity * MAX_LOAD * 0.5) capacity *= 2;
    this.nextSlots = new Int32Array(capacity);
    this.nextHashes = new Uint32Array(capacity);
    this.moved = new Int32Array(oldCapacity);
    this.copied = 0;
    this.nextTombstones = 0;
    this.nextTtlSlots = new Int32Array(this.ttlSlots.length);
  }

  /** Copies the next `maxSlots` old slots into the new index; ends the build after the last one. */
  private copyStep(maxSlots: number): void {
    const slots = this.slots;
    const hashes = this.hashes;
    const moved = this.moved;
    const from = this.copied;
    const to = Math.min(slots.length, from + maxSlots);
    const listed = this.ttlCount !== 0 ? this.ttlPos : null;
    for (let j = from; j < to; j++) {
      const s = slots[j]!;
      if (s === EMPTY || s === TOMBSTONE) {
        moved[j] = -1;
        continue;
      }
      const at = this.place(s, hashes[j]!);
      moved[j] = at;
      // Listed for the sweep: its place in the list, under its new slot number.
      if (listed !== null && listed[j] !== 0) this.listNext(listed[j]! - 1, at);
    }
    this.copied = to;
    this.slotsCopiedTotal += to - from;
    if (to === slots.length) this.swapBuild();
  }

  /** Puts a record handle into the new index by its hash (linear probe to an empty slot); returns the slot. */
  private place(handle: number, hash: number): number {
    const slots = this.nextSlots;
    const mask = slots.length - 1;
    let i = hash & mask;
    while (slots[i] !== EMPTY) i = (i + 1) & mask;
    slots[i] = handle;
    this.nextHashes[i] = hash;
    return i;
  }

  /** Every old slot is copied: the new index replaces the old, and slot numbers change (a new epoch). */
  private swapBuild(): void {
    this.slots = this.nextSlots;
    this.hashes = this.nextHashes;
    this.mask = this.slots.length - 1;
    this.tombstones = this.nextTombstones;
    this.epoch++;
    // The expiry list keeps its order (and the sweep its place in it); only slot numbers change, and the
    // build kept the list under the new ones as it went (nextTtlPos). No key with a TTL: the positions go
    // (and come back with the next TTL).
    if (this.ttlCount === 0) this.ttlPos = NO_TTL_POS;
    else {
      assert(this.nextTtlPos !== NO_TTL_POS, "a build that copied keys with a TTL listed them");
      this.ttlPos = this.nextTtlPos;
      this.ttlSlots = this.nextTtlSlots;
    }
    this.endBuild();
  }

  private endBuild(): void {
    this.nextSlots = NO_BUILD_SLOTS;
    this.nextHashes = NO_BUILD_HASHES;
    this.moved = NO_BUILD_SLOTS;
    this.copied = 0;
    this.nextTombstones = 0;
    this.nextTtlPos = NO_TTL_POS;
    this.nextTtlSlots = NO_BUILD_SLOTS;
  }

  /**
   * Copies up to `maxSlots` more old slots into the index being built (the
   * owner's call when idle, so that inserts find less to do); returns true
   * while a build is still running. Ending a build changes slot numbers
   * (indexEpoch), as an insert may: call it between commands, not while
   * holding a slot number.
   */
  rebuildStep(maxSlots: number): boolean {
    assert(maxSlots > 0, "a rebuild step copies at least one slot");
    if (this.moved === NO_BUILD_SLOTS) return false;
    this.copyStep(maxSlots);
    return this.moved !== NO_BUILD_SLOTS;
  }

  /** Whether an incremental build of the index is running (see startBuild). */
  get rebuilding(): boolean {
    return this.moved !== NO_BUILD_SLOTS;
  }

  /** Old slots copied by incremental builds since this store was made: at most STEP_SLOTS per insert. */
  get rebuildSlotsCopied(): number {
    return this.slotsCopiedTotal;
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
      this.nextSlots.byteLength +
      this.nextHashes.byteLength +
      this.moved.byteLength +
      this.nextTtlPos.byteLength +
      this.nextTtlSlots.byteLength +
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
    this.endBuild(); // a running build is dropped with the index it was copying
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
