/**
 * A snapshot on disk: one file per snapshot, written whole to a temporary
 * name, fsynced, renamed into place and the directory fsynced, so a crash
 * leaves either the old set of snapshots or the new one, never half a file
 * under a real name. A checksum still guards against the disk itself.
 *
 *   u32 magic "PSNP" | u32 crc32c of everything after it |
 *   u64 index | u64 term | u16 voters | u16 learners | u32 ids... | data
 */
import { crc32c } from "./crc32c.js";
import type { Snapshot } from "../raft/types.js";
import { getU64, putU64 } from "./record.js";

const MAGIC = 0x504e5350; // "PSNP" little endian

/** snap-<group, 10 digits>-<index, 20 digits>.snap: sorts by group, then index. */
export function snapshotFileName(group: number, index: number): string {
  return `snap-${String(group).padStart(10, "0")}-${String(index).padStart(20, "0")}.snap`;
}

const SNAPSHOT_NAME = /^snap-(\d{10})-\d{20}\.snap$/;

export function isSnapshotFile(name: string): boolean {
  return SNAPSHOT_NAME.test(name);
}

/** The group a snapshot file belongs to (its name says). */
export function snapshotGroup(name: string): number {
  return Number(SNAPSHOT_NAME.exec(name)![1]);
}

export function encodeSnapshot(s: Snapshot): Uint8Array {
  const ids = [...s.meta.voters, ...s.meta.learners];
  const head = 8 + 16 + 4 + 4 * ids.length;
  const out = new Uint8Array(head + s.data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  putU64(v, 8, s.meta.index);
  putU64(v, 16, s.meta.term);
  v.setUint16(24, s.meta.voters.length, true);
  v.setUint16(26, s.meta.learners.length, true);
  for (const [i, id] of ids.entries()) v.setUint32(28 + 4 * i, id, true);
  out.set(s.data, head);
  v.setUint32(4, crc32c(out.subarray(8)), true);
  return out;
}

/** The snapshot, or null when the file is damaged (bad magic, checksum or layout). */
export function decodeSnapshot(buf: Uint8Array): Snapshot | null {
  if (buf.length < 28) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint32(0, true) !== MAGIC || crc32c(buf.subarray(8)) !== v.getUint32(4, true)) return null;
  const nv = v.getUint16(24, true);
  const nl = v.getUint16(26, true);
  const head = 28 + 4 * (nv + nl);
  if (head > buf.length) return null;
  const ids: number[] = [];
  for (let i = 0; i < nv + nl; i++) ids.push(v.getUint32(28 + 4 * i, true));
  return {
    meta: { index: getU64(v, 8), term: getU64(v, 16), voters: ids.slice(0, nv), learners: ids.slice(nv) },
    data: buf.slice(head),
  };
}
