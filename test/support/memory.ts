// Watching a server process's memory from outside, as an operator would:
// its resident set size from /proc/<pid>/status (Linux). VmRSS is the RSS
// now; VmHWM its peak, which the kernel keeps for us (no sample can miss a
// spike), and which writing "5" to /proc/<pid>/clear_refs resets to the
// RSS now, so each scenario of a test can have a peak of its own.
import { readFileSync, writeFileSync } from "node:fs";

export const MiB = 1024 * 1024;

function statusField(pid: number, field: "VmRSS" | "VmHWM" | "VmSize"): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error(`no ${field} for process ${pid}`);
  return Number(m[1]) * 1024;
}

/** The process's resident set size now, in bytes. */
export function rssBytes(pid: number): number {
  return statusField(pid, "VmRSS");
}

/**
 * The process's virtual size: what it has allocated, touched or not. A
 * buffer allocated and barely written costs little RSS (its pages are never
 * touched) but shows here; this is how a test sees an allocation sized by a
 * claim rather than by bytes.
 */
export function virtualBytes(pid: number): number {
  return statusField(pid, "VmSize");
}

/** The process's peak resident set size since it started or since resetPeakRss(). */
export function peakRssBytes(pid: number): number {
  return statusField(pid, "VmHWM");
}

/** Starts a new peak: from now on peakRssBytes() reports the largest RSS from this moment. */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

/** The process's RSS once it has been still for a moment (for a baseline). */
export async function settledRss(pid: number, ms = 1500): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return rssBytes(pid);
}

export const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
