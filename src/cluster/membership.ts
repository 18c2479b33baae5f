/**
 * The members this member knows: the bootstrap list (`--cluster`), those
 * listed with `--joined`, and those learned since, when a member started
 * after the others introduced itself (src/cluster/transport.ts, announce).
 * A learned member is recorded durably before it is kept (joined.json in
 * the node, src/cluster/joined.ts), so a restart with the old flags still
 * knows it.
 */
import { MAX_CLUSTER_MEMBERS, type Member } from "./placement.js";

export class Membership {
  /** In id order. */
  private list: Member[];

  constructor(
    readonly self: Member,
    /** Members 1..bootstrapCount are the bootstrap list; joined members have higher ids. */
    private readonly bootstrapCount: number,
    members: readonly Member[],
    /** Records the joined members (those past the bootstrap list) durably; throws when it cannot. */
    private readonly record: (joined: Member[]) => void,
    private readonly warn: (message: string, detail: object) => void,
  ) {
    this.list = [...members].sort((a, b) => a.id - b.id);
  }

  all(): readonly Member[] {
    return this.list;
  }

  has(id: number): boolean {
    return this.list.some((m) => m.id === id);
  }

  /**
   * A member joined after bootstrap introduced itself: keep it if it takes a
   * joined id and a name not in use, once recorded. False refuses it.
   */
  learn(m: Member): boolean {
    if (m.id <= this.bootstrapCount || m.id > MAX_CLUSTER_MEMBERS) return false;
    if (this.list.some((x) => x.id === m.id || x.name === m.name)) return false;
    const members = [...this.list, m].sort((a, b) => a.id - b.id);
    try {
      this.record(members.filter((x) => x.id > this.bootstrapCount));
    } catch (err) {
      this.warn("could not record a joined member", { err: (err as Error).message, member: m.name });
      return false;
    }
    this.list = members;
    return true;
  }
}
