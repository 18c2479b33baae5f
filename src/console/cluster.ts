/**
 * Cluster: the members and whether each answers, and every partition's
 * leader, term, commit and apply positions and each follower's lag, as a
 * grid with a column per member: a person sees at a glance which member is
 * down (its cells red), which partitions lag (amber) and who leads what.
 *
 * It asks GET /v1/cluster every half second (the gateway asks every member, with
 * a 1 s deadline each, src/cerializer/routes/cluster.ts): a member killed
 * fails its link at once, so it turns red within about a second, two at most.
 *
 * Leadership transfer and member replace are admin actions: shown only to a
 * user the node says has admin permission (GET /v1/auth/whoami), each behind
 * a confirmation; the node still refuses anyone else (403, shown in words),
 * as it does on every port.
 */
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, apiJson, postJson, signedInAs } from "./api.js";
import { Confirm, ErrorBox } from "./ui.js";

/**
 * Every half second: a member killed must turn red within a second or two, and one poll period plus the
 * request is the delay. Each poll costs one cluster-info request per member.
 */
const POLL_MS = 500;
/** A follower this many entries behind its leader is shown as lagging. */
const LAG_WARN_ENTRIES = 1_000;

interface Member {
  id: number;
  name: string;
  clientAddress: string;
  peerAddress: string;
  answered: boolean;
  /** The gateway asked it (it does not ask a member holding no replica yet). */
  asked: boolean;
  connected: boolean;
}
interface Follower {
  member: number;
  lag: number;
  state: string;
  active: boolean;
  learner: boolean;
}
interface Partition {
  partition: number;
  leader: number;
  term: number;
  commit: number;
  applied: number;
  replicas: number[];
  learners: number[];
  followers: Follower[];
  seenBy: number;
}
interface Status {
  self: number;
  members: Member[];
  partitions: Partition[];
}

export function ClusterView() {
  const [status, setStatus] = useState<Status | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [updatedAt, setUpdatedAt] = useState(0);
  const [notCluster, setNotCluster] = useState(false);
  const poke = useRef<() => void>(() => {});

  useEffect(() => {
    let live = true;
    let timer = 0;
    const poll = async () => {
      const started = Date.now();
      try {
        const s = await apiJson<Status>("/v1/cluster");
        if (!live) return;
        setStatus(s);
        setError(null);
        setUpdatedAt(Date.now());
      } catch (e) {
        if (!live) return;
        setError((e as Error).message);
        // Not a cluster: nothing to poll for.
        if (e instanceof ApiError && e.status === 501) {
          setNotCluster(true);
          return;
        }
      }
      if (live) timer = window.setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
    };
    poke.current = () => {
      window.clearTimeout(timer);
      void poll();
    };
    void poll();
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
  }, []);

  if (notCluster)
    return html`<p class="muted">This gateway is in front of a single node, not a cluster: there are no members or
      partitions to show. (Start it with <code>--cluster true</code> in front of cluster members.)</p>
      <${ErrorBox} error=${error} />`;
  if (status === null)
    return html`<${ErrorBox} error=${error} />${error === null ? html`<p class="muted">Asking the members…</p>` : null}`;

  const byId = new Map(status.members.map((m) => [m.id, m]));
  const name = (id: number) => byId.get(id)?.name ?? (id === 0 ? "none" : `#${id}`);
  const down = status.members.filter((m) => !m.answered && (m.asked || !m.connected));
  const leaderless = status.partitions.filter((p) => p.leader === 0 || !byId.get(p.leader)?.answered);
  // A follower on a member that is down is counted there, not here; a quiet one (an idle partition sends no
  // heartbeats: docs/cluster.md) is not lagging.
  const lagging = status.partitions.filter((p) =>
    p.followers.some((f) => f.lag >= LAG_WARN_ENTRIES && byId.get(f.member)?.answered === true),
  );
  return html`
    <section aria-label="Members">
      <h2>Members</h2>
      <${ErrorBox} error=${error} />
      <p class="muted" aria-live="polite">
        ${status.partitions.length} partitions ·
        ${down.length === 0 ? " every member answers" : ` down: ${down.map((m) => m.name).join(", ")}`} ·
        ${leaderless.length === 0 ? " every partition has a leader" : ` ${leaderless.length} without a reachable leader`} ·
        ${lagging.length === 0 ? " no follower lagging" : ` ${lagging.length} with a lagging follower`} ·
        ${` updated ${new Date(updatedAt).toLocaleTimeString()}`}
      </p>
      <table class="members">
        <thead><tr><th>Member</th><th>Id</th><th>Client address</th><th>Peer address</th><th>State</th><th>Leads</th></tr></thead>
        <tbody>
          ${status.members.map(
            (m) => html`<tr data-testid=${`member-${m.name}`} class=${down.includes(m) ? "down" : ""}>
              <td>${m.name}</td><td>${m.id}</td><td>${m.clientAddress || "?"}</td><td>${m.peerAddress}</td>
              <td data-testid="member-state">${memberState(m)}</td>
              <td>${status.partitions.filter((p) => p.leader === m.id).length}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
    <section aria-label="Partitions">
      <h2>Partitions</h2>
      <p class="muted legend">
        <span class="cell leader">L</span> leader · <span class="cell">12</span> follower, entries behind ·
        <span class="cell lag">1.2k</span> lagging (1,000 entries or more) · <span class="cell down">×</span> member down ·
        <span class="cell learner">+</span> learner
      </p>
      <div class="grid-wrap" tabindex="0" aria-label="Partition grid">
        <table class="grid" data-testid="partition-grid">
          <thead>
            <tr><th>Partition</th><th>Leader</th><th>Term</th><th>Commit</th><th>Applied</th>
              ${status.members.map((m) => html`<th class=${m.answered ? "" : "down"}>${m.name}</th>`)}</tr>
          </thead>
          <tbody>
            ${status.partitions.map(
              (p) => html`<tr>
                <td>${p.partition}</td><td>${name(p.leader)}</td><td>${p.term}</td><td>${p.commit}</td><td>${p.applied}</td>
                ${status.members.map((m) => html`<${Cell} p=${p} m=${m} />`)}
              </tr>`,
            )}
          </tbody>
        </table>
      </div>
    </section>
    <${AdminGate} status=${status} refresh=${() => poke.current()} />
  `;
}

function memberState(m: Member) {
  if (m.answered) return html`<span class="badge up">up</span>`;
  if (!m.asked && m.connected)
    return html`<span class="badge" title="it holds no replica yet, so the gateway does not ask it; its peers reach it">joined, no replicas</span>`;
  return html`<span class="badge down">down</span>`;
}

function Cell(props: { p: Partition; m: Member }) {
  const { p, m } = props;
  const voter = p.replicas.includes(m.id);
  const learner = p.learners.includes(m.id);
  if (!voter && !learner) return html`<td class="cell none" title="no replica here"></td>`;
  const f = p.followers.find((x) => x.member === m.id);
  const where = `partition ${p.partition} on ${m.name}`;
  if (!m.answered) return html`<td class="cell down" data-state="down" title=${`${where}: member down`}>×</td>`;
  if (p.leader === m.id)
    return html`<td class="cell leader" data-state="leader" title=${`${where}: leader, term ${p.term}`}>L</td>`;
  if (f === undefined)
    return html`<td class=${learner ? "cell learner" : "cell"} data-state="replica" title=${`${where}: replica (lag unknown: its leader did not answer)`}>${learner ? "+" : "·"}</td>`;
  const lagging = f.lag >= LAG_WARN_ENTRIES;
  const text = f.lag >= 1000 ? `${(f.lag / 1000).toFixed(1)}k` : String(f.lag);
  return html`<td class=${`cell${lagging ? " lag" : ""}${learner ? " learner" : ""}`} data-state=${lagging ? "lagging" : "follower"}
    title=${`${where}: ${learner ? "learner" : "follower"}, ${f.lag} entries behind, ${f.state}${f.active ? "" : ", silent"}`}
    >${learner ? "+" : ""}${text}</td>`;
}

/** GET /v1/auth/whoami: who the console's requests run as, and what the node lets them do. */
interface WhoAmI {
  user: string;
  read: boolean;
  write: boolean;
  admin: boolean;
  allKeys: boolean;
}

/** The admin actions for a user with admin permission; for anyone else, a line saying what they need. */
function AdminGate(props: { status: Status; refresh: () => void }) {
  const user = signedInAs();
  const [who, setWho] = useState<WhoAmI | null | undefined>(undefined);
  useEffect(() => {
    let live = true;
    setWho(undefined);
    apiJson<WhoAmI>("/v1/auth/whoami").then(
      (w) => live && setWho(w),
      () => live && setWho(null),
    );
    return () => {
      live = false;
    };
  }, [user]);
  if (who === undefined) return null;
  if (who?.admin) return html`<${AdminActions} status=${props.status} refresh=${props.refresh} />`;
  return html`<section aria-label="Admin actions" class="admin">
    <h2>Admin actions</h2>
    <p class="muted" data-testid="admin-needed">
      Leadership transfer, member replace, drain and forget need a user with admin permission${
        who === null ? "" : html`, which <strong>${who.user}</strong> does not have`
      }. Sign in as one to use them.
    </p>
  </section>`;
}

type Pending =
  | { kind: "transfer"; partition: number; member: number }
  | { kind: "replace"; old: number; new: number }
  | { kind: "drain"; member: number }
  | { kind: "forget"; member: number }
  | null;

/** How long Drain keeps asking before it reports what is still led (as `piccolo cluster drain`'s default). */
const DRAIN_WAIT_MS = 30_000;

/** A list of partitions for a sentence: all of a short one, the first ten of a long one. */
function partitionList(ps: number[]): string {
  return ps.length <= 10 ? ps.join(", ") : `${ps.slice(0, 10).join(", ")} and ${ps.length - 10} more`;
}

interface ForgetReport {
  holds: number[];
  unknown: number[];
  told: string[];
  refused: { member: string; why: string }[];
  unreached: string[];
}

function AdminActions(props: { status: Status; refresh: () => void }) {
  const { status } = props;
  const members = status.members;
  const [partition, setPartition] = useState("0");
  const [target, setTarget] = useState(String(members[0]?.id ?? 1));
  const [oldM, setOldM] = useState(String(members[0]?.id ?? 1));
  const [newM, setNewM] = useState(String(members[1]?.id ?? 2));
  const [drainM, setDrainM] = useState(String(members[0]?.id ?? 1));
  const [forgetM, setForgetM] = useState(String(members[members.length - 1]?.id ?? 1));
  const [confirm, setConfirm] = useState<Pending>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const name = (id: number) => members.find((m) => m.id === id)?.name ?? `#${id}`;

  const run = async () => {
    if (confirm === null) return;
    const c = confirm;
    setConfirm(null);
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      if (c.kind === "transfer") {
        await postJson("/v1/cluster/transfer-leader", { partition: c.partition, member: c.member });
        setNotice(
          `Asked partition ${c.partition}'s leader to hand over to ${name(c.member)}; the grid shows it within a second or two.`,
        );
      } else if (c.kind === "drain") {
        const who = name(c.member);
        let r = await postJson<{ led: number[] }>("/v1/cluster/drain", { member: c.member });
        const total = r.led.length;
        const deadline = Date.now() + DRAIN_WAIT_MS;
        while (r.led.length > 0 && Date.now() < deadline) {
          setNotice(`Draining ${who}: ${total - r.led.length}/${total} partitions handed over…`);
          await new Promise((res) => setTimeout(res, 500));
          r = await postJson("/v1/cluster/drain", { member: c.member });
        }
        if (r.led.length === 0)
          setNotice(`Drained: ${who} leads no partition (${total} handed over). It keeps running.`);
        else
          setError(
            `${who} still leads partitions ${partitionList(r.led)} after ${DRAIN_WAIT_MS / 1000} s: no caught-up follower took them. Drain again to go on.`,
          );
      } else if (c.kind === "forget") {
        const who = name(c.member);
        const r = await postJson<ForgetReport>("/v1/cluster/forget", { member: c.member });
        if (r.holds.length > 0)
          setError(
            `${who} still holds a replica or learner of ${r.holds.length} partitions (${partitionList(r.holds)}): replace it first. Nothing was changed.`,
          );
        else if (r.unknown.length > 0)
          setError(
            `The configuration of partitions ${partitionList(r.unknown)} could not be read (no leader answered): nothing was changed. Try again.`,
          );
        else {
          const parts = [`${who} forgotten by ${r.told.length > 0 ? r.told.join(", ") : "no member"}.`];
          if (r.unreached.length > 0)
            parts.push(`Not reached: ${r.unreached.join(", ")} (each learns it from the first member it greets).`);
          setNotice(parts.join(" "));
          if (r.refused.length > 0) setError(r.refused.map((x) => `${x.member} refused: ${x.why}`).join("; "));
        }
      } else {
        let r = await postJson<{ partitions: number[]; pending: number[]; skipped: number[] }>("/v1/cluster/replace", {
          old: c.old,
          new: c.new,
        });
        const total = r.partitions.length;
        const deadline = Date.now() + 5 * 60_000;
        while (r.pending.length > 0 && Date.now() < deadline) {
          setNotice(
            `Replacing ${name(c.old)} with ${name(c.new)}: ${total - r.pending.length}/${total} partitions moved…`,
          );
          await new Promise((res) => setTimeout(res, 1000));
          r = await postJson("/v1/cluster/replace", { old: c.old, new: c.new, partitions: r.partitions });
        }
        setNotice(
          r.pending.length === 0
            ? `Replaced: ${total} partitions moved from ${name(c.old)} to ${name(c.new)}${r.skipped.length > 0 ? ` (${r.skipped.length} skipped: ${name(c.new)} already votes there)` : ""}.`
            : `Stopped after 5 minutes with ${r.pending.length} partitions not moved (${r.pending.join(", ")}); run it again to go on.`,
        );
      }
      props.refresh();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const memberOptions = members.map((m) => html`<option value=${String(m.id)}>${m.name}</option>`);
  return html`<section aria-label="Admin actions" class="admin">
    <h2>Admin actions</h2>
    <p class="muted">These need a user with admin permission: the node refuses anyone else, and the refusal is shown here.</p>
    <form class="row" onSubmit=${(e: Event) => {
      e.preventDefault();
      setConfirm({ kind: "transfer", partition: Number(partition), member: Number(target) });
    }}>
      <label for="xfer-p">Hand partition</label>
      <select id="xfer-p" value=${partition} onChange=${(e: Event) => setPartition((e.target as HTMLSelectElement).value)}>
        ${status.partitions.map((p) => html`<option value=${String(p.partition)}>${p.partition}</option>`)}
      </select>
      <label for="xfer-m">to</label>
      <select id="xfer-m" value=${target} onChange=${(e: Event) => setTarget((e.target as HTMLSelectElement).value)}>${memberOptions}</select>
      <button type="submit" disabled=${busy}>Transfer leadership…</button>
    </form>
    <form class="row" onSubmit=${(e: Event) => {
      e.preventDefault();
      setConfirm({ kind: "replace", old: Number(oldM), new: Number(newM) });
    }}>
      <label for="rep-old">Replace member</label>
      <select id="rep-old" value=${oldM} onChange=${(e: Event) => setOldM((e.target as HTMLSelectElement).value)}>${memberOptions}</select>
      <label for="rep-new">with</label>
      <select id="rep-new" value=${newM} onChange=${(e: Event) => setNewM((e.target as HTMLSelectElement).value)}>${memberOptions}</select>
      <button type="submit" disabled=${busy}>Replace…</button>
    </form>
    <form class="row" onSubmit=${(e: Event) => {
      e.preventDefault();
      setConfirm({ kind: "drain", member: Number(drainM) });
    }}>
      <label for="drain-m">Drain member</label>
      <select id="drain-m" value=${drainM} onChange=${(e: Event) => setDrainM((e.target as HTMLSelectElement).value)}>${memberOptions}</select>
      <button type="submit" disabled=${busy}>Drain…</button>
    </form>
    <form class="row" onSubmit=${(e: Event) => {
      e.preventDefault();
      setConfirm({ kind: "forget", member: Number(forgetM) });
    }}>
      <label for="forget-m">Forget member</label>
      <select id="forget-m" value=${forgetM} onChange=${(e: Event) => setForgetM((e.target as HTMLSelectElement).value)}>${memberOptions}</select>
      <button type="submit" disabled=${busy}>Forget…</button>
    </form>
    ${
      confirm === null
        ? null
        : html`<${Confirm} label="Confirm" action="Yes, do it" onConfirm=${run} onCancel=${() => setConfirm(null)}>
            ${
              confirm.kind === "transfer"
                ? `Hand partition ${confirm.partition}'s leadership to ${name(confirm.member)}?`
                : confirm.kind === "drain"
                  ? `Hand every partition ${name(confirm.member)} leads to a caught-up follower? It keeps running and its replicas stay.`
                  : confirm.kind === "forget"
                    ? `Forget ${name(confirm.member)} for good? Every member drops it from its address book and refuses it from then on, and it stops; it cannot rejoin under its id. It must hold no replica (replace it first).`
                    : `Move every replica ${name(confirm.old)} holds to ${name(confirm.new)}? Each partition changes membership in steps; this can take a minute.`
            }
          <//>`
    }
    <${ErrorBox} error=${error} />
    ${notice !== null ? html`<p class="notice" role="status">${notice}</p>` : null}
  </section>`;
}
