/**
 * TEST ONLY: network faults on demand, for the chaos harness (src/chaos/chaos.ts)
 * and tests that need a fault at a chosen moment (test/cluster/forward-once.test.ts).
 *
 * A decorator over a member's peer network (src/cluster/peer-network.ts):
 * the node installs it only when PICCOLO_TEST_FAULT_FILE names a file
 * (src/node/main.ts), so a production member has no test branch anywhere on
 * its path: without the variable this code is never called. With it, the
 * member rereads the file every FAULT_FILE_POLL_MS and applies all of it:
 *
 *   block <member> out    drop what this member sends to <member> (a one-way partition)
 *   block <member> in     drop what <member> sends to this member
 *   block <member> both   both (also "block <member>")
 *   mute-replies <member> serve what <member> forwards here, but drop the answers
 *                         (the write is applied, its answer lost)
 *   delay <member> <ms>   what this member sends to <member> leaves <ms> later, in
 *                         order (a slow link: frames are in the air that long)
 *
 * Connections stay up while blocked, as behind a firewall that drops
 * packets: sends succeed locally and vanish, and the member's liveness
 * (src/cluster/liveness.ts) sees a blocked peer fall silent. An empty file
 * heals everything.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import { decodePeerFrame } from "../cluster/peer-codec.js";
import type { PeerHandlers, PeerNetwork, PeerNetworkFactory } from "../cluster/peer-network.js";

/** How often the fault file is reread. */
export const FAULT_FILE_POLL_MS = 50;

export class PeerFaults {
  /** Peers whose outgoing / incoming traffic is dropped. */
  private readonly blockedOut = new Set<number>();
  private readonly blockedIn = new Set<number>();
  /** Peers whose forwarded commands are served here but never answered. */
  private readonly mutedReplies = new Set<number>();
  /** Peers whose outgoing traffic is held back, and for how many ms. */
  private readonly delayedOut = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private last = "";

  constructor(
    private readonly path: string,
    private readonly logger: Logger,
  ) {}

  /** Applies the file's lines (the whole file; what it no longer says is healed). */
  apply(text: string): void {
    this.blockedOut.clear();
    this.blockedIn.clear();
    this.mutedReplies.clear();
    this.delayedOut.clear();
    for (const line of text.split("\n")) {
      const [verb, peer, dir = "both"] = line.trim().split(/\s+/);
      if (peer === undefined) continue;
      if (verb === "block") {
        if (dir !== "in") this.blockedOut.add(Number(peer));
        if (dir !== "out") this.blockedIn.add(Number(peer));
      }
      if (verb === "mute-replies") this.mutedReplies.add(Number(peer));
      if (verb === "delay") this.delayedOut.set(Number(peer), Number(dir));
    }
  }

  /** The network `make` makes, with these faults applied in both directions. */
  wrap(make: PeerNetworkFactory): PeerNetworkFactory {
    return (h) => this.decorate(make(this.filterIncoming(h)));
  }

  private filterIncoming(h: PeerHandlers): PeerHandlers {
    const blocked = this.blockedIn;
    const filtered: PeerHandlers = {
      onMessages: (from, messages) => {
        if (!blocked.has(from)) h.onMessages(from, messages);
      },
      onFrame: (from, frame) => {
        if (!blocked.has(from)) h.onFrame(from, frame);
      },
      onPeerDown: (peer) => h.onPeerDown(peer),
      onJoin: (m) => h.onJoin(m),
      clientAddress: () => h.clientAddress(),
      forgotten: () => h.forgotten(),
      onForgotten: (m, from) => h.onForgotten(m, from),
      onSelfForgotten: (by, list) => h.onSelfForgotten(by, list),
    };
    const raw = h.onRaftFrame;
    if (raw !== undefined)
      filtered.onRaftFrame = (from, frame) => {
        if (!blocked.has(from)) raw(from, frame);
      };
    return filtered;
  }

  private decorate(inner: PeerNetwork): PeerNetwork {
    return {
      sendFrame: (to, frame) => {
        if (this.blockedOut.has(to)) return false;
        if (this.mutedReplies.has(to) && decodePeerFrame(frame).kind === "forwardReply") return false;
        const delayMs = this.delayedOut.get(to);
        if (delayMs !== undefined) {
          // A copy: the caller may reuse its buffer once this returns. Timers of one length fire in order.
          const copy = frame.slice();
          setTimeout(() => inner.sendFrame(to, copy), delayMs);
          return inner.isConnected(to);
        }
        return inner.sendFrame(to, frame);
      },
      isConnected: (peer) => inner.isConnected(peer),
      // A blocked peer's frames still reach the transport, which would count them as signs of life.
      heardWithin: (peer, ms) => !this.blockedIn.has(peer) && inner.heardWithin(peer, ms),
      sentWithin: (peer, ms) => inner.sentWithin(peer, ms),
      reject: (peer, why) => inner.reject(peer, why),
      forget: (peer) => inner.forget(peer),
      stats: () => inner.stats(),
      start: async () => {
        const started = await inner.start();
        this.watch();
        return started;
      },
      stop: async () => {
        if (this.timer !== null) clearInterval(this.timer);
        this.timer = null;
        await inner.stop();
      },
    };
  }

  private watch(): void {
    this.logger.warn({ path: this.path }, "TEST FAULT INJECTION ENABLED: peer traffic follows this file");
    this.timer = setInterval(() => {
      readFile(this.path, "utf8").then(
        (text) => {
          if (text === this.last) return;
          this.last = text;
          this.apply(text);
        },
        () => {},
      );
    }, FAULT_FILE_POLL_MS);
    this.timer.unref();
  }
}
