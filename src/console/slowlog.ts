/**
 * The slow log (docs/tracing.md, "Slow requests"): each node's newest
 * requests that took at least its threshold, from GET /v1/slowlog. One table
 * per node: when, how long, the command and its arguments, the client, the
 * port; an entry of a traced request has its timeline, drawn as a waterfall
 * (trace.ts) when its Timeline button is pressed.
 *
 * Reading the log needs the admin permission, as Redis's SLOWLOG does, so the
 * panel asks who the user is first (GET /v1/auth/whoami) and, for anyone else,
 * says so instead of sending a request the node would refuse. It is read when
 * the view opens and on Refresh, not polled: an operator looks at it after
 * something was slow, and each read asks every node.
 */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { apiJson, signedInAs } from "./api.js";
import { displayBytes } from "./bytes.js";
import type { SlowEntry } from "../protocol/trace-shapes.js";
import { formatUs, Waterfall } from "./trace.js";
import { ErrorBox } from "./ui.js";

/** Entries asked for per node, the choices offered (the node keeps at most 1,024). */
const COUNTS = [10, 50, 200] as const;

interface NodeLog {
  node: string;
  up: boolean;
  slowlog: { entries: SlowEntry[]; length: number; slowerThanUs: number; maxLen: number } | null;
  error?: string;
}

/** An argument as text, with what is invisible or misleading shown escaped (bytes.ts), as keys are. */
function shownArg(a: string): string {
  return displayBytes(new TextEncoder().encode(a));
}

function threshold(us: number): string {
  return us < 0 ? "logs nothing (off)" : us === 0 ? "logs every request" : `logs requests of ${formatUs(us)} or more`;
}

export function SlowLogPanel() {
  const user = signedInAs();
  const [admin, setAdmin] = useState<boolean | null | undefined>(undefined);
  const [who, setWho] = useState("");
  const [count, setCount] = useState<number>(COUNTS[0]);
  const [logs, setLogs] = useState<NodeLog[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [reload, setReload] = useState(0);
  /** The entries whose timeline is drawn, by node and id. */
  const [open, setOpen] = useState<Set<string>>(new Set());

  useEffect(() => {
    let live = true;
    apiJson<{ user: string; admin: boolean }>("/v1/auth/whoami").then(
      (w) => {
        if (!live) return;
        setWho(w.user);
        setAdmin(w.admin);
      },
      () => live && setAdmin(null),
    );
    return () => {
      live = false;
    };
  }, [user]);

  useEffect(() => {
    if (admin !== true) return;
    let live = true;
    setLoading(true);
    setError(null);
    apiJson<{ nodes: NodeLog[] }>(`/v1/slowlog?count=${count}`)
      .then((r) => live && setLogs(r.nodes))
      .catch((e: Error) => live && setError(e.message))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [admin, count, reload]);

  const toggle = (k: string) =>
    setOpen((o) => {
      const n = new Set(o);
      if (n.has(k)) n.delete(k);
      else n.add(k);
      return n;
    });

  if (admin === undefined) return null;
  if (admin !== true)
    return html`<section aria-label="Slow log" class="slowlog">
      <h2>Slow log</h2>
      <p class="muted" data-testid="slowlog-needs-admin">
        Reading the slow log needs a user with admin permission${who === "" ? "" : html`, which <strong>${who}</strong> does not have`}.
        Sign in as one to see it.
      </p>
    </section>`;

  return html`<section aria-label="Slow log" class="slowlog">
    <h2>Slow log</h2>
    <div class="row">
      <label for="slowlog-count">Newest entries per node</label>
      <select id="slowlog-count" value=${String(count)} onChange=${(e: Event) => setCount(Number((e.target as HTMLSelectElement).value))}>
        ${COUNTS.map((c) => html`<option value=${String(c)}>${c}</option>`)}
      </select>
      <button type="button" disabled=${loading} onClick=${() => setReload((n) => n + 1)}>Refresh</button>
      <span class="muted" role="status">${loading ? "Reading…" : ""}</span>
    </div>
    <p class="muted">
      Each node's newest requests that took at least its threshold, from receipt to answer (set it with${" "}
      <code>piccolo server --slowlog-slower-than</code> or RESP <code>CONFIG SET slowlog-log-slower-than</code>).
      A request that was traced has its timeline.
    </p>
    <${ErrorBox} error=${error} />
    ${(logs ?? []).map(
      (n) => html`<div class="slowlog-node" data-testid="slowlog-node">
        <h3 class="mono">${n.node}${n.up ? "" : " (down)"}</h3>
        ${
          n.slowlog === null
            ? html`<p class="error" role="alert">${n.error ?? "no answer"}</p>`
            : html`<p class="muted">
                  ${threshold(n.slowlog.slowerThanUs)}; holds ${n.slowlog.length} of at most ${n.slowlog.maxLen} entries${
                    n.slowlog.entries.length < n.slowlog.length ? `, the newest ${n.slowlog.entries.length} shown` : ""
                  }.
                </p>
                ${
                  n.slowlog.entries.length === 0
                    ? html`<p class="muted">No slow request logged.</p>`
                    : html`<table class="events" data-testid="slowlog-entries">
                        <thead><tr><th>#</th><th>Received</th><th class="num">Took</th><th>Command</th><th>Client</th><th>Port</th><th>Timeline</th></tr></thead>
                        <tbody>
                          ${n.slowlog.entries.map((e) => {
                            const k = `${n.node}#${e.id}`;
                            const shown = open.has(k);
                            return html`<tr key=${k} data-testid="slowlog-entry">
                                <td>${e.id}</td>
                                <td>${new Date(e.timeMs).toLocaleTimeString()}</td>
                                <td class="num">${formatUs(e.durationUs)}</td>
                                <td class="mono" data-testid="slowlog-args">${e.args.map(shownArg).join(" ")}</td>
                                <td class="mono">${shownArg(e.client)}${e.clientName === "" ? "" : ` (${shownArg(e.clientName)})`}</td>
                                <td>${e.port}</td>
                                <td>
                                  ${
                                    e.spans === null
                                      ? html`<span class="muted" title="only a traced request's entry has its timeline">not traced</span>`
                                      : html`<button type="button" aria-expanded=${shown} onClick=${() => toggle(k)}>
                                          ${shown ? "Hide" : "Show"} (${e.spans.length} spans)
                                        </button>`
                                  }
                                </td>
                              </tr>
                              ${
                                shown && e.spans !== null
                                  ? html`<tr key=${`${k}:t`}>
                                      <td colspan="7" class="slowlog-trace-cell">
                                        <${Waterfall} trace=${{ spans: e.spans }} label=${`Timeline of slow request ${e.id} on ${n.node}`} />
                                      </td>
                                    </tr>`
                                  : null
                              }`;
                          })}
                        </tbody>
                      </table>`
                }`
        }
      </div>`,
    )}
  </section>`;
}
