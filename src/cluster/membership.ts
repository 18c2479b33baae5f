/**
 * The members this member knows: the bootstrap list (`--cluster`), those
 * listed with `--joined`, and those learned since, when a member started
 * after the others introduced itself (src/cluster/transport.ts, announce).
 * A learned member is recorded durably before it is kept (joined.json in
 * the node, src/cluster/joined.ts), so a restart with the old flags still
 * knows it.
 *
 * And the members forgotten for good (`piccolo cluster forget`), recorded
 * durably before they are dropped (forgotten.json): never listed, never
 * learned again, whatever the flags say (docs/cluster.md, "Forgetting a
 * member"; decision 0214).
 */
import { type ForgottenMember, isForgotten, MAX_CLUSTER_MEMBERS, type Member } from "./placement.js";

export class Membership {
  /** In id order; never a forgotten member. */
  private list: Member[];
  private forgottenList: ForgottenMember[];

  constructor(
    readonly self: Member,
    /** Members 1..bootstrapCount are the bootstrap list; joined members have higher ids. */
    private readonly bootstrapCount: number,
    members: readonly Member[],
    /** Records the joined members (those past the bootstrap list) durably; throws when it cannot. */
    private readonly record: (joined: Member[]) => void,
    private readonly warn: (message: string, detail: object) => void,
    /** Members forgotten before (loaded from where recordForgotten wrote them). */
    forgotten: readonly ForgottenMember[] = [],
    /** Records the whole forgotten list durably; throws when it cannot. */
    private readonly recordForgotten: (forgotten: ForgottenMember[]) => void = () => {},
  ) {
    this.forgottenList = [...forgotten];
    this.list = members.filter((m) => !isForgotten(forgotten, m)).sort((a, b) => a.id - b.id);
  }

  all(): readonly Member[] {
    return this.list;
  }

  get(id: number): Member | undefined {
    return this.list.find((m) => m.id === id);
  }

  forgotten(): readonly ForgottenMember[] {
    return this.forgottenList;
  }

  /** Whether a member with this id or this name was forgotten. */
  isForgotten(m: { id: number; name: string }): boolean {
    return isForgotten(this.forgottenList, m);
  }

  /**
   * Forgets `m` for good: recorded durably first (so a crash right after
   * cannot bring it back on restart), then dropped from the list. Its id
   * and name are never accepted again. Idempotent. Throws when the record
   * cannot be written (nothing changed then). The caller checks that no
   * replica still needs it (src/cluster/admin.ts, forgetMember).
   */
  forget(m: ForgottenMember): void {
    if (this.forgottenList.some((f) => f.id === m.id && f.name === m.name)) return;
    const next = [...this.forgottenList, { id: m.id, name: m.name }].sort((a, b) => a.id - b.id);
    this.recordForgotten(next);
    this.forgottenList = next;
    this.list = this.list.filter((x) => !isForgotten(next, x));
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
    if (this.isForgotten(m)) return false;
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
