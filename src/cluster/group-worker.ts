/**
 * A group worker thread: one GroupHost (src/cluster/group-host.ts), the Raft
 * groups of the partitions p with p % hosts === host, their WAL and the maps
 * they apply to (decision 0189). This is the cluster-mode shard worker: the
 * Raft core, its log and the map sit on the same thread, and nothing is
 * shared with the IO thread but the two rings.
 *
 * Unlike the single-node worker (src/shard/worker.ts), which sleeps in
 * Atomics.wait, this one runs an event loop: Raft has timers and the WAL does
 * asynchronous file IO. It waits for records with Atomics.waitAsync. Its end
 * of the rings is a HostServer (src/cluster/host-server.ts); this file adds
 * the thread's lifecycle and the node's clock and WAL.
 */
import { parentPort, workerData } from "node:worker_threads";
import { initHash } from "../hash.js";
import { startIdleTrim } from "../idle-trim.js";
import { blockingFs } from "../wal/fs.js";
import { realClock } from "./clock.js";
import { GroupHost, type HostConfig, type HostDeps, type HostStorage, walStorage } from "./group-host.js";
import type { RecordWriter } from "./host-channel.js";
import { HostServer } from "./host-server.js";

export interface GroupWorkerData {
  options: HostConfig;
  requestRing: SharedArrayBuffer;
  notifyRing: SharedArrayBuffer;
}

async function main(data: GroupWorkerData): Promise<void> {
  const server = new HostServer(data.requestRing, data.notifyRing);
  let host: GroupHost;
  try {
    await initHash(); // placement hashes member names (each thread loads its own wasm instance)
    host = await GroupHost.open(data.options, server.hostOut, workerHostDeps(data.options.walDir, server.out));
  } catch (err) {
    parentPort!.postMessage({ type: "error", error: (err as Error).message });
    return;
  }
  server.attach(host);
  server.input.start();
  host.start();
  // This thread runs an event loop (Raft's timers, the WAL's IO), so it trims as the IO thread does: its
  // young generation given back once its loop is idle after a load (decision 0299). Never stopped: it
  // is unref'd, and the thread ends with the node.
  startIdleTrim(() => {});
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
