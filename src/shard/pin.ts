/**
 * Pinning a shard worker to one CPU core (Linux).
 *
 * Node offers no API for thread affinity, but Linux lets any thread find its
 * own kernel thread id: /proc/thread-self is a link to /proc/<pid>/task/<tid>.
 * `taskset -p -c <core> <tid>` (util-linux) then sets that one thread's
 * affinity with sched_setaffinity(2). We call it once per worker at start.
 *
 * Pinning keeps a shard's map hot in one core's caches and stops the kernel
 * from migrating the thread. It can be refused (no taskset, a container's
 * cpuset that excludes the core, another OS): the caller logs that once and
 * the worker runs unpinned, which is correct, only less predictable.
 */
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";

export interface PinOutcome {
  ok: boolean;
  tid: number;
  detail: string;
}

export function pinCurrentThread(core: number): PinOutcome {
  if (process.platform !== "linux") return { ok: false, tid: 0, detail: `pinning is Linux-only (${process.platform})` };
  let tid = 0;
  try {
    const link = readlinkSync("/proc/thread-self"); // "<pid>/task/<tid>"
    tid = Number(link.split("/").pop());
    execFileSync("taskset", ["-p", "-c", String(core), String(tid)], { stdio: "ignore", timeout: 2000 });
    return { ok: true, tid, detail: `thread ${tid} pinned to core ${core}` };
  } catch (err) {
    return { ok: false, tid, detail: `could not pin thread ${tid} to core ${core}: ${(err as Error).message}` };
  }
}
