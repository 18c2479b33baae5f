/**
 * A free loopback port for a process to be started later (a cluster's peer
 * ports are in its member list before any member runs).
 *
 * Not the OS's pick (listen on port 0): that comes from the ephemeral range,
 * the same range every outgoing connection's local port comes from, so
 * between our check and the member's listen, any client connecting anywhere
 * could take it (seen: a member refusing to start, its peer port "already in
 * use"). Ports below the ephemeral range are only taken by listeners, so a
 * random one that binds now stays free unless another test picks the same
 * one before its owner listens.
 *
 * That last race is closed with a reservation: a file per port in a shared
 * directory, created exclusively, so two processes (test files run in
 * parallel, each its own process) never hand out the same port within
 * RESERVE_MS of each other. Without it the full suite, picking some 1,500
 * ports from 22,000 with a few always between pick and listen, hit a
 * collision in a noticeable share of runs.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** How long a port handed out stays reserved: far longer than any start takes. */
const RESERVE_MS = 120_000;
const RESERVED = join(tmpdir(), "piccolo-free-ports");

/** Reserves `port` for this process; false when another process holds a fresh reservation on it. */
function reserve(port: number): boolean {
  const file = join(RESERVED, String(port));
  try {
    mkdirSync(RESERVED, { recursive: true });
    writeFileSync(file, String(process.pid), { flag: "wx" });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") return true; // no shared directory: fall back to the bind check
    try {
      if (Date.now() - statSync(file).mtimeMs < RESERVE_MS) return false;
      rmSync(file, { force: true });
      writeFileSync(file, String(process.pid), { flag: "wx" });
      return true;
    } catch {
      return false;
    }
  }
}

/** The lowest port Linux hands out for outgoing connections (32768 unless configured). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2048 ? low : 32768;
  } catch {
    return 32768;
  }
}

const LOW = 10_000;
const HIGH = Math.max(LOW + 1000, ephemeralLow());

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (reserve(port) && (await bindable(port))) return port;
  }
  throw new Error(`no free loopback port found in ${LOW}-${HIGH - 1}`);
}
