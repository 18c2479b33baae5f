// What the peer-security tests share: finding a member's peer port, waiting
// for a log line or a close, and checking that a cluster still serves.
import assert from "node:assert/strict";
import type { ClientOptions } from "../../src/client/client.js";
import { parseMemberLists } from "../../src/cluster/placement.js";
import { eventually } from "../support/eventually.js";
import type { RunningNode } from "../support/node.js";

export function peerPort(list: string, name: string): number {
  return parseMemberLists(list).all.find((m) => m.name === name)!.port;
}

/** The member logs a line matching `what` (the logger writes asynchronously: it may follow a close by a moment). */
export async function logged(n: RunningNode, what: RegExp, ms = 8_000): Promise<void> {
  await eventually(`the member logs ${what}`, async () => assert.match(n.stderr(), what), ms);
}

/** `closed` settles within `ms`, else the test fails naming `what`. */
export async function closedWithin(closed: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closed,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: connection still open after ${ms} ms`)), ms);
    }),
  ]);
  clearTimeout(timer);
}

/** A write through `writer` then a read of it through `reader` (another member): the cluster serves. */
export async function serves(
  writer: RunningNode,
  reader: RunningNode,
  key: string,
  options: ClientOptions = {},
): Promise<void> {
  const w = await writer.client({ timeoutMs: 8_000, ...options });
  const r = await reader.client({ timeoutMs: 8_000, ...options });
  try {
    await eventually(`put ${key}`, () => w.put(key, `value of ${key}`), 20_000);
    assert.equal((await r.get(key))?.value.toString(), `value of ${key}`);
  } finally {
    await w.close();
    await r.close();
  }
}
