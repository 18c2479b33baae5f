/**
 * Live: watch a key or a prefix change, and a chart of the load.
 *
 * The watch reads the gateway's Server-Sent Events stream (GET /v1/watch,
 * docs/cerializer.md "Watch streams") with fetch() rather than EventSource,
 * because EventSource cannot send an Authorization header (a signed-in
 * user's token) and hides why a stream failed; the few lines of SSE parsing
 * below say it in words instead. When the stream breaks it can be resumed
 * from the last position the gateway sent (?from=), missing nothing.
 *
 * The chart polls GET /v1/stats once a second: the gateway's data requests
 * over the last whole second (count, 5xx errors, latency percentiles:
 * src/cerializer/recent.ts) and the nodes' own read and write counters, of
 * which it plots the rate.
 */
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { api, apiJson } from "./api.js";
import { displayBytes, formatBytes, fromWire, keyPath } from "./bytes.js";
import { SlowLogPanel } from "./slowlog.js";
import { ErrorBox } from "./ui.js";

/** Events kept on screen, newest first. */
const MAX_EVENTS = 200;
/** Seconds of history in the charts. */
const CHART_SECONDS = 60;

interface WatchEvent {
  kind: string;
  key: string;
  keyEncoding: string;
  value: string | null;
  encoding: string;
  valueBytes: number;
  version: number;
  expireAtMs: number;
}

interface Shown {
  n: number;
  at: string;
  kind: string;
  key: string;
  value: string;
  version: number;
}

export function LiveView() {
  return html`<div class="live">
    <${Watch} />
    <${Charts} />
    <${SlowLogPanel} />
  </div>`;
}

function Watch() {
  const [what, setWhat] = useState("");
  const [prefix, setPrefix] = useState(true);
  const [running, setRunning] = useState<AbortController | null>(null);
  const [events, setEvents] = useState<Shown[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [state, setState] = useState("not watching");
  const position = useRef("");
  const count = useRef(0);

  useEffect(() => () => running?.abort(), [running]);

  const start = async (resume: boolean) => {
    running?.abort();
    const ctl = new AbortController();
    setRunning(ctl);
    setError(null);
    if (!resume) {
      position.current = "";
      setEvents([]);
    }
    const target = keyPath(new TextEncoder().encode(what));
    const from = resume && position.current !== "" ? `&from=${encodeURIComponent(position.current)}` : "";
    setState("connecting…");
    try {
      const res = await api(`/v1/watch?${prefix ? "prefix" : "key"}=${target}${from}`, {
        headers: { accept: "text/event-stream" },
        signal: ctl.signal,
      });
      if (res.body === null) throw new Error("the gateway sent no stream");
      setState(`watching ${prefix ? "every key starting with" : "the key"} ${JSON.stringify(what)}`);
      await readStream(res.body, (ev) => {
        if (ev.id !== undefined) position.current = ev.id;
        if (ev.data === undefined) return;
        if (ev.event === "compacted" || ev.event === "error") {
          const d = JSON.parse(ev.data) as { message?: string; position?: string };
          if (d.position) position.current = d.position;
          throw new Error(
            ev.event === "compacted"
              ? `The watch fell behind the history the node keeps and was cut off: changes were missed. ${d.message ?? ""}`
              : `The stream ended: ${d.message ?? "error"}`,
          );
        }
        const e = JSON.parse(ev.data) as WatchEvent;
        const key = displayBytes(fromWire(e.key, e.keyEncoding));
        const value =
          e.value === null
            ? e.kind === "put"
              ? `(${formatBytes(e.valueBytes)}: too large to carry; open the key)`
              : e.kind === "expire"
                ? e.expireAtMs === 0
                  ? "TTL removed"
                  : `expires at ${new Date(e.expireAtMs).toLocaleTimeString()}`
                : ""
            : displayBytes(fromWire(e.value, e.encoding)).slice(0, 200);
        count.current++;
        const shown = {
          n: count.current,
          at: new Date().toLocaleTimeString(),
          kind: e.kind,
          key,
          value,
          version: e.version,
        };
        setEvents((old) => [shown, ...old].slice(0, MAX_EVENTS));
      });
      setState("the stream ended");
      setError("The gateway closed the stream. Resume to go on from the last position.");
    } catch (e) {
      if ((e as Error).name === "AbortError") {
        setState("stopped");
        return;
      }
      setState("stopped");
      setError((e as Error).message);
    } finally {
      setRunning((r) => (r === ctl ? null : r));
    }
  };

  return html`<section aria-label="Watch" class="watch">
    <h2>Watch</h2>
    <form class="row" onSubmit=${(e: Event) => {
      e.preventDefault();
      void start(false);
    }}>
      <label for="watch-what">Key or prefix</label>
      <input id="watch-what" value=${what} placeholder="empty prefix: every key" onInput=${(e: Event) => setWhat((e.target as HTMLInputElement).value)} />
      <label><input type="checkbox" checked=${prefix} onChange=${(e: Event) => setPrefix((e.target as HTMLInputElement).checked)} /> prefix</label>
      <button type="submit" class="primary">Watch</button>
      <button type="button" disabled=${running === null} onClick=${() => running?.abort()}>Stop</button>
      <button type="button" disabled=${running !== null || position.current === ""} onClick=${() => void start(true)}>Resume</button>
    </form>
    <p class="muted" role="status" data-testid="watch-state">${state}</p>
    <${ErrorBox} error=${error} />
    <table class="events" data-testid="watch-events">
      <thead><tr><th>#</th><th>Time</th><th>Change</th><th>Key</th><th>Version</th><th>Value</th></tr></thead>
      <tbody>
        ${events.map(
          (e) =>
            html`<tr key=${e.n}><td>${e.n}</td><td>${e.at}</td><td>${e.kind}</td><td class="mono">${e.key}</td><td>${e.version}</td><td class="mono">${e.value}</td></tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

interface SseEvent {
  event?: string;
  id?: string;
  data?: string;
}

/** Server-Sent Events from a byte stream: blocks separated by a blank line (the WHATWG format, as the gateway writes it). */
async function readStream(body: ReadableStream<Uint8Array>, on: (e: SseEvent) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let end = buf.indexOf("\n\n");
    while (end >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const ev: SseEvent = {};
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
        if (field === "event") ev.event = v;
        else if (field === "id") ev.id = v;
        else if (field === "data") ev.data = ev.data === undefined ? v : `${ev.data}\n${v}`;
      }
      on(ev);
      end = buf.indexOf("\n\n");
    }
  }
}

interface Stats {
  gateway: {
    lastSecond: { startMs: number; requests: number; errors: number; p50Ms: number; p90Ms: number; p99Ms: number };
  };
  nodes: {
    node: string;
    up: boolean;
    stats: { shards: { reads: number; writes: number; keys: number }[] } | null;
    error?: string;
  }[];
}

function Charts() {
  const opsEl = useRef<HTMLDivElement>(null);
  const latEl = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [summary, setSummary] = useState("");

  useEffect(() => {
    const width = () => Math.max(300, (opsEl.current?.parentElement?.clientWidth ?? 600) - 16);
    const axis = {
      stroke: "#888",
      grid: { stroke: "rgba(128,128,128,0.2)" },
      ticks: { stroke: "rgba(128,128,128,0.3)" },
    };
    const t: number[] = [];
    const reqs: (number | null)[] = [];
    const nodeOps: (number | null)[] = [];
    const errs: (number | null)[] = [];
    const p50: (number | null)[] = [];
    const p90: (number | null)[] = [];
    const p99: (number | null)[] = [];
    const ops = new uPlot(
      {
        title: "Operations per second",
        width: width(),
        height: 180,
        axes: [axis, axis],
        series: [
          {},
          { label: "gateway requests/s", stroke: "#3b82f6", width: 2 },
          { label: "node reads+writes/s", stroke: "#10b981", width: 2 },
          { label: "errors/s (5xx)", stroke: "#ef4444", width: 2 },
        ],
      },
      [t, reqs, nodeOps, errs],
      opsEl.current!,
    );
    const lat = new uPlot(
      {
        title: "Latency through the gateway (ms)",
        width: width(),
        height: 180,
        axes: [axis, axis],
        series: [
          {},
          { label: "p50", stroke: "#10b981", width: 2 },
          { label: "p90", stroke: "#f59e0b", width: 2 },
          { label: "p99", stroke: "#ef4444", width: 2 },
        ],
      },
      [t, p50, p90, p99],
      latEl.current!,
    );
    const onResize = () => {
      ops.setSize({ width: width(), height: 180 });
      lat.setSize({ width: width(), height: 180 });
    };
    window.addEventListener("resize", onResize);

    let live = true;
    let timer = 0;
    let prev: { atMs: number; total: number } | null = null;
    let lastSecond = 0;
    const push = <T>(a: T[], v: T) => {
      a.push(v);
      if (a.length > CHART_SECONDS) a.shift();
    };
    const poll = async () => {
      try {
        const s = await apiJson<Stats>("/v1/stats");
        if (!live) return;
        const atMs = Date.now();
        let total = 0;
        let keys = 0;
        for (const n of s.nodes)
          for (const sh of n.stats?.shards ?? []) {
            total += sh.reads + sh.writes;
            keys += sh.keys;
          }
        const failing = s.nodes.filter((n) => n.stats === null);
        const rate = prev === null ? null : Math.max(0, ((total - prev.total) * 1000) / (atMs - prev.atMs));
        prev = { atMs, total };
        const ls = s.gateway.lastSecond;
        if (ls.startMs !== lastSecond) {
          lastSecond = ls.startMs;
          push(t, ls.startMs / 1000 + 1);
          push(reqs, ls.requests);
          push(nodeOps, rate);
          push(errs, ls.errors);
          push(p50, ls.requests === 0 ? null : ls.p50Ms);
          push(p90, ls.requests === 0 ? null : ls.p90Ms);
          push(p99, ls.requests === 0 ? null : ls.p99Ms);
          ops.setData([t, reqs, nodeOps, errs]);
          lat.setData([t, p50, p90, p99]);
        }
        setSummary(
          `${s.nodes.length} node${s.nodes.length === 1 ? "" : "s"}, ${keys} keys held (every replica counts) · last second: ${ls.requests} requests, ${ls.errors} errors`,
        );
        setError(
          failing.length === 0
            ? null
            : `No numbers from ${failing.map((n) => `${n.node} (${n.error ?? "down"})`).join(", ")}.`,
        );
      } catch (e) {
        if (live) setError((e as Error).message);
      }
      if (live) timer = window.setTimeout(poll, 1000);
    };
    void poll();
    return () => {
      live = false;
      window.clearTimeout(timer);
      window.removeEventListener("resize", onResize);
      ops.destroy();
      lat.destroy();
    };
  }, []);

  return html`<section aria-label="Load" class="charts">
    <h2>Load</h2>
    <p class="muted" data-testid="load-summary">${summary}</p>
    <${ErrorBox} error=${error} />
    <div ref=${opsEl} data-testid="chart-ops"></div>
    <div ref=${latEl} data-testid="chart-latency"></div>
  </section>`;
}
