/**
 * A group worker thread: one GroupHost (src/cluster/group-host.ts), the Raft
 * groups of the partitions p with p % hosts === host, their WAL and the maps
 * they apply to (decision 0189). This is the cluster-mode shard worker: the
 * Raft core, its log and the map sit on the same thread, and nothing is
 * shared with the IO thread but the two rings.
 *
 * Unlike the single-node worker (src/shard/worker.ts), which sleeps in
 * Atomics.wait, this one runs an event loop: Raft has timers and the WAL does
 * asynchronous file IO. It waits for records with Atomics.waitAsync.
 */
import { parentPort, workerData } from "node:worker_threads";
import { initHash } from "../hash.js";
import { blockingFs } from "../wal/fs.js";
import { realClock } from "./clock.js";
import { GroupHost, type HostConfig, type HostDeps, type HostOut, type HostStorage, walStorage } from "./group-host.js";
import { type HostRecord, In, jsonBytes, Out, parseJson, RecordReader, RecordWriter } from "./host-channel.js";
import type { Control } from "./host-link.js";
import { type DecodedFrame, decodePeerFrame, encodeRaftFrames } from "./peer-codec.js";

export interface GroupWorkerData {
  options: HostConfig;
  requestRing: SharedArrayBuffer;
  notifyRing: SharedArrayBuffer;
}

async function main(data: GroupWorkerData): Promise<void> {
  const out = new RecordWriter(data.notifyRing);
  let input: RecordReader | null = null;
  const hostOut: HostOut = {
    send: (to, messages) => {
      for (const frame of encodeRaftFrames(messages)) out.write(Out.Send, to, 0, 0, frame);
    },
    flush: () => out.flush(),
    takeInput: () => input?.poll(),
    route: (r) => out.write(Out.Route, r.group, r.replica ? 1 : 0, r.leader),
    log: (level, message, detail) => out.write(Out.Log, 0, 0, 0, jsonBytes({ level, message, detail })),
    fatal: (message, detail) => out.write(Out.Fatal, 0, 0, 0, jsonBytes({ message, detail })),
  };
  let host: GroupHost;
  try {
    await initHash(); // placement hashes member names (each thread loads its own wasm instance)
    host = await GroupHost.open(data.options, hostOut, workerHostDeps(data.options.walDir, out));
  } catch (err) {
    parentPort!.postMessage({ type: "error", error: (err as Error).message });
    return;
  }

  const onRecord = (r: HostRecord): void => {
    switch (r.kind) {
      case In.Serve: {
        const id = r.a;
        // The payload is ring memory, valid only during this call: the request outlives it.
        void host.serve(r.b, r.c, r.payload.slice()).then(
          (o) =>
            o.kind === "result" ? out.write(Out.Outcome, id, 0, 0, o.result) : out.write(Out.Outcome, id, 1, o.leader),
          (err: unknown) => hostOut.fatal("serving a request failed", { err: (err as Error).message }),
        );
        return;
      }
      case In.Step: {
        let f: DecodedFrame;
        try {
          // Read in place: the decoder copies what outlives this call (entry data).
          f = decodePeerFrame(r.payload);
        } catch (err) {
          // Only frames passed through undecoded can fail here; their sender's connection is dropped.
          out.write(Out.BadFrame, r.a, 0, 0, new TextEncoder().encode((err as Error).message));
          return;
        }
        if (f.kind === "raft") host.step(f.messages);
        return;
      }
      case In.Control: {
        const id = r.a;
        const c = parseJson<Control>(r.payload);
        const reply = (v: unknown): void => {
          if (id !== 0) out.write(Out.Reply, id, 0, 0, jsonBytes(v ?? null));
        };
        switch (c.op) {
          case "transfer":
            return reply(host.transfer(c.group, c.to));
          case "replace":
            return reply(host.stepReplace(c.group, c.remove, c.add));
          case "rebalance":
            return host.rebalance(c.settled);
          case "wake":
            return host.wake(c.member);
          case "status":
            return reply(host.status());
          case "close":
            void host.close().then(() => reply(null));
            return;
        }
      }
    }
  };
  input = new RecordReader(data.requestRing, onRecord);
  input.start();
  host.start();
  parentPort!.postMessage({ type: "ready" });
}

/**
 * The node's clock and randomness, and the host's WAL with blocking file
 * calls: this thread serves no sockets, so its WAL may block it (src/wal/fs.ts,
 * blockingFs). Before each blocking write the round's answers are handed
 * over first (a proposal's answer travels through a few promise reactions,
 * so this waits for the event loop's next turn, when they have all run), then
 * published. Otherwise early messages and answers would wait out the fsync,
 * and the leader's and its followers' fsyncs would no longer overlap.
 */
function workerHostDeps(walDir: string, out: RecordWriter): HostDeps {
  const open = walStorage(walDir, { fs: blockingFs });
  const handOver = async (): Promise<void> => {
    await new Promise((r) => setImmediate(r));
    out.flush();
  };
  return {
    clock: realClock,
    rand: Math.random,
    openStorage: async () => {
      const { storage: wal, groups } = await open();
      const storage: HostStorage = {
        persist: async (round, mustSync) => {
          await handOver();
          return wal.persist(round, mustSync);
        },
        saveCompaction: async (group, snapshot) => {
          await handOver();
          return wal.saveCompaction(group, snapshot);
        },
        close: () => wal.close(),
      };
      return { storage, groups };
    },
  };
}

void main(workerData as GroupWorkerData);
