// A real node whose shards can be told to fail: the IO loop, the native and
// Redis listeners, their parsers, dispatcher and command handlers are the
// production code, on real loopback sockets; only the answers of the shard
// layer are replaced, on demand, by a failure status. A cluster produces
// these statuses (TIMEOUT, UNAVAILABLE, SHUTTING_DOWN...) only under faults,
// with timing no test controls, and some (INTERNAL) only on a bug: this is
// how every handler meets every one of them, deterministically. The
// backend is the node's documented extension point (NodeOptions.backend,
// which cluster mode uses), and it answers asynchronously, as the cluster
// does.
import { Users } from "../../src/security/users.js";
import { pino } from "pino";
import { PiccoloNode } from "../../src/io/server.js";
import { InlineShards, type ShardBackend, type ShardEvents } from "../../src/io/shards.js";
import { DEFAULT_MAX_VALUE_BYTES } from "../../src/limits.js";
import { startResp } from "../../src/resp/listener.js";
import { type CommandFields, type Op, Result } from "../../src/shard/command.js";

export class FaultyShards implements ShardBackend {
  readonly count = 1;
  private readonly inner: InlineShards;
  /** The status every command gets from now on instead of its real answer; null: real answers. */
  failWith: number | null = null;
  /** Commands that still get their real answer before failWith applies (to fail a later step). */
  passFirst = 0;
  /** The ops of the commands received since the last reset(). */
  ops: Op[] = [];

  constructor(private readonly events: ShardEvents) {
    this.inner = new InlineShards(events);
  }

  reset(failWith: number | null, passFirst = 0): void {
    this.failWith = failWith;
    this.passFirst = passFirst;
    this.ops = [];
  }

  send(shard: number, c: CommandFields): void {
    this.ops.push(c.op);
    if (this.failWith === null || this.passFirst-- > 0) return this.inner.send(shard, c);
    const r = new Result().reset(c.tag);
    r.status = this.failWith;
    queueMicrotask(() => {
      this.events.onResult(r);
      this.events.onBatchEnd();
    });
  }

  flush(): void {
    this.inner.flush();
  }

  congested(): boolean {
    return false;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface FaultyNode {
  node: PiccoloNode;
  shards: FaultyShards;
  port: number;
  respPort: number;
  stop(): Promise<void>;
}

/** A node on loopback with FaultyShards behind both its native and Redis ports. */
export async function startFaultyNode(): Promise<FaultyNode> {
  let shards!: FaultyShards;
  const node = new PiccoloNode({
    host: "127.0.0.1",
    port: 0,
    shards: 0,
    maxValueBytes: DEFAULT_MAX_VALUE_BYTES,
    pin: false,
    users: await Users.open(null, null),
    protectedMode: true,
    tls: null,
    logger: pino({ level: "silent" }),
    backend: async (events) => {
      shards = new FaultyShards(events);
      return shards;
    },
  });
  const port = await node.start();
  const respPort = await startResp(node, 0, port);
  return { node, shards, port, respPort, stop: () => node.stop() };
}
