// The persistence contract under a host that awaits its disk, one group of two
// members: (1) a follower never acknowledges entries that are not durable, even
// when they arrive while its previous write is in flight; (2) a leader's
// appends leave before its own write completes (thesis §10.2.1), yet nothing
// commits until the leader's own copy is durable too.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type GroupPersist, MultiRaft, type RaftStorage, type StateMachine } from "../../src/cluster/multi-raft.js";
import type { GroupMessage } from "../../src/cluster/peer-codec.js";
import { MessageType, message } from "../../src/raft/messages.js";
import type { Entry, Snapshot } from "../../src/raft/types.js";
import { mulberry32 } from "../support/random.js";

const enc = new TextEncoder();

/** Storage whose writes complete only when the test says so (when gated). */
class GatedStorage implements RaftStorage {
  gated = false;
  private waiting: (() => void)[] = [];
  readonly written: GroupPersist[][] = [];
  async persist(round: GroupPersist[]): Promise<void> {
    if (this.gated) await new Promise<void>((r) => this.waiting.push(r));
    this.written.push(round);
  }
  async saveCompaction(): Promise<void> {}
  pending(): number {
    return this.waiting.length;
  }
  release(): void {
    const w = this.waiting;
    this.waiting = [];
    for (const r of w) r();
  }
}

class Noop implements StateMachine {
  apply(_g: number, e: Entry): Uint8Array {
    return enc.encode(String(e.index));
  }
  restore(_g: number, _s: Snapshot): void {}
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
}

function member(id: number) {
  const storage = new GatedStorage();
  const mr = new MultiRaft({
    member: id,
    groups: [{ group: 0, voters: [1, 2] }],
    storage,
    stateMachine: new Noop(),
    rand: mulberry32(id),
  });
  return { id, mr, storage };
}

type M = ReturnType<typeof member>;

/** Runs rounds (delivering everything) until member 1 leads group 0. */
async function elect(a: M, b: M): Promise<void> {
  const byId = new Map([
    [1, a],
    [2, b],
  ]);
  for (let i = 0; i < 500; i++) {
    if (a.mr.status(0).isLeader && b.mr.status(0).leader === 1) return;
    if (i === 0) a.mr.step([{ group: 0, message: hup(1) }]);
    for (const n of [a, b]) {
      n.mr.tick();
      for (const [to, batch] of await n.mr.process()) byId.get(to)!.mr.step(batch);
    }
  }
  assert.fail("member 1 did not become leader");
}

function hup(id: number): GroupMessage["message"] {
  return message({ type: MessageType.Hup, to: id, from: id, term: 0 });
}

describe("persistence order with a host that awaits its disk", () => {
  it("a follower acknowledges only what is durable, even entries that arrive during its write", async () => {
    const [l, f] = [member(1), member(2)];
    await elect(l, f);
    const first = l.mr.status(0).lastIndex + 1;
    void l.mr.propose(0, enc.encode("a"));
    const toF1 = (await l.mr.process()).get(2)!;
    f.storage.gated = true;
    f.mr.step(toF1);
    const fRound = f.mr.process(); // blocked on its write of entry `first`
    await new Promise((r) => setImmediate(r));
    assert.equal(f.storage.pending(), 1);
    // A second entry reaches the follower while that write is in flight.
    void l.mr.propose(0, enc.encode("b"));
    f.mr.step((await l.mr.process()).get(2)!);
    f.storage.release();
    const acks = ((await fRound).get(1) ?? []).filter((m) => m.message.type === MessageType.AppResp);
    assert.ok(acks.length > 0, "the durable entry is acknowledged");
    for (const a of acks)
      assert.ok(a.message.index <= first, `acknowledged ${a.message.index} with only ${first} durable`);
    // The next round writes the second entry, then acknowledges it.
    f.storage.gated = false;
    const next = ((await f.mr.process()).get(1) ?? []).filter((m) => m.message.type === MessageType.AppResp);
    assert.ok(next.some((a) => a.message.index === first + 1));
    assert.equal(f.storage.written.at(-1)![0]!.entries.at(-1)!.index, first + 1);
  });

  it("a leader sends appends while its own write is in flight, and commits only once it is durable", async () => {
    const [l, f] = [member(1), member(2)];
    await elect(l, f);
    const sent: GroupMessage[] = [];
    l.mr.sendEarly = (out) => {
      for (const batch of out.values()) sent.push(...batch);
    };
    const index = l.mr.status(0).lastIndex + 1;
    const answer = l.mr.propose(0, enc.encode("c"));
    l.storage.gated = true;
    const lRound = l.mr.process();
    await new Promise((r) => setImmediate(r));
    assert.equal(l.storage.pending(), 1, "the leader's write is in flight");
    const app = sent.find(
      (m) => m.message.type === MessageType.App && m.message.entries.some((e) => e.index === index),
    );
    assert.ok(app !== undefined, "the append left before the leader's write completed");
    // The follower writes and acknowledges; the leader hears it while its own write is pending.
    f.mr.step([app]);
    const ack = (await f.mr.process()).get(1)!;
    l.mr.step(ack);
    assert.ok(l.mr.status(0).commit < index, "one durable copy of two is not a majority");
    l.storage.release();
    await lRound;
    assert.ok(l.mr.status(0).commit >= index, "committed once the leader's own copy is durable");
    l.storage.gated = false;
    await l.mr.process();
    assert.equal(new TextDecoder().decode(await answer), String(index));
  });
});
