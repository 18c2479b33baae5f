// Members for tests that run the peer transport in this process: a loopback
// member list on free ports, and waiting for a condition the transports
// reach on their own.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { type Member, parseMembers } from "../../src/cluster/placement.js";
import { initHash } from "../../src/hash.js";
import { freePort } from "./node.js";

/** `n` members n1..nN on free 127.0.0.1 ports. */
export async function loopbackMembers(n: number): Promise<Member[]> {
  await initHash();
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  return parseMembers(ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(","));
}

/** Polls `f` every 10 ms until it holds; fails naming `what` after `ms`. */
export async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(10);
  }
}
