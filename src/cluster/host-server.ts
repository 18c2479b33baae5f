/**
 * A group host's end of the rings (src/cluster/host-channel.ts): records in
 * become calls on the GroupHost, and what the host says becomes records out.
 * It runs on a group worker thread in the node (src/cluster/group-worker.ts)
 * and on the simulator's one thread in src/sim/kv-cluster.ts, so the
 * simulator exercises the ring protocol the node uses, record for record
 * (bug 6 in docs/cluster.md, a request handed over twice, lived here).
 */
import { type GroupHost, type HostOut, whyFatal } from "./group-host.js";
import { type HostRecord, In, jsonBytes, Out, parseJson, RecordReader, RecordWriter } from "./host-channel.js";
import type { Control } from "./host-link.js";
import { type DecodedFrame, decodePeerFrame, encodeRaftFrames } from "./peer-codec.js";

export class HostServer {
  readonly out: RecordWriter;
  readonly input: RecordReader;
  /** What the host says, as records (pass it to GroupHost.open). */
  readonly hostOut: HostOut;
  private host: GroupHost | null = null;

  constructor(requestRing: SharedArrayBuffer, notifyRing: SharedArrayBuffer) {
    const out = new RecordWriter(notifyRing, (level, message, detail) => this.hostOut.log(level, message, detail));
    this.out = out;
    this.input = new RecordReader(requestRing, (r) => this.onRecord(r));
    this.hostOut = {
      send: (to, messages) => {
        for (const frame of encodeRaftFrames(messages)) out.writeRaft(Out.Send, to, frame);
      },
      flush: () => out.flush(),
      takeInput: () => {
        if (this.host !== null) this.input.poll();
      },
      route: (r) => out.write(Out.Route, r.group, r.replica ? 1 : 0, r.leader),
      log: (level, message, detail) => out.write(Out.Log, 0, 0, 0, jsonBytes({ level, message, detail })),
      fatal: (message, detail) => out.write(Out.Fatal, 0, 0, 0, jsonBytes({ message, detail })),
    };
  }

  /** The host is open: records reach it from now on. */
  attach(host: GroupHost): void {
    this.host = host;
  }

  private onRecord(r: HostRecord): void {
    const host = this.host;
    if (host === null) return;
    const out = this.out;
    switch (r.kind) {
      case In.Serve: {
        const id = r.a;
        // The payload is ring memory, valid only during this call: the request outlives it.
        void host.serve(r.b, r.c, r.payload.slice()).then(
          (o) =>
            o.kind === "result" ? out.write(Out.Outcome, id, 0, 0, o.result) : out.write(Out.Outcome, id, 1, o.leader),
          (err: unknown) => {
            const why = whyFatal(err);
            this.hostOut.fatal(`${why.message} while serving a request; stopping this member`, why.detail);
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
            return reply(host.transfer(c.group, c.to, c.handoff === true));
          case "replace":
            return reply(host.stepReplace(c.group, c.remove, c.add));
          case "rebalance":
            return host.rebalance(c.settled);
          case "wake":
            return host.wake(c.member, c.lost);
          case "status":
            return reply(host.status());
          case "close":
            void host.close().then(() => reply(null));
            return;
        }
      }
    }
  }
}
