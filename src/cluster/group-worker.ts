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
import { GroupHost, type HostOptions, type HostOut, whyFatal } from "./group-host.js";
import { type HostRecord, In, jsonBytes, Out, parseJson, RecordReader, RecordWriter } from "./host-channel.js";
import type { Control } from "./host-link.js";
import { type DecodedFrame, decodePeerFrame, encodeRaftFrames } from "./peer-codec.js";

export interface GroupWorkerData {
  options: HostOptions;
  requestRing: SharedArrayBuffer;
  notifyRing: SharedArrayBuffer;
}

async function main(data: GroupWorkerData): Promise<void> {
  const out = new RecordWriter(data.notifyRing, (level, message, detail) => hostOut.log(level, message, detail));
  let input: RecordReader | null = null;
  const hostOut: HostOut = {
    send: (to, messages) => {
      for (const frame of encodeRaftFrames(messages)) out.writeRaft(Out.Send, to, frame);
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
    // This thread serves no sockets: its WAL may block it (src/wal/fs.ts, blockingFs).
    host = await GroupHost.open({ ...data.options, walIo: "blocking" }, hostOut);
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
          (err: unknown) => {
            const why = whyFatal(err);
            hostOut.fatal(`${why.message} while serving a request; stopping this member`, why.detail);
          },
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

void main(workerData as GroupWorkerData);
