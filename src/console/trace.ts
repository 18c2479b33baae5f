/**
 * A request's timeline drawn as a waterfall (docs/tracing.md): one row per
 * span, with its stage, where it ran (io, worker N, member N), its start and
 * duration in words, a bar placed and sized on the request's whole length,
 * and what the stage did. The same picture `piccolo trace` prints in a
 * terminal (src/cli/waterfall.ts), as a table: the numbers are text, so a
 * screen reader reads them and the bars (drawn with CSS, hidden from it)
 * only repeat them for the eye.
 *
 * Used for a key's traced read or write (keys.ts, `?trace=1`) and for a slow
 * log entry that was traced (slowlog.ts). Every string in a span comes from
 * the node and is put in text nodes only, as keys are.
 */
import { html } from "htm/preact";
import type { TraceSpan } from "../protocol/trace-shapes.js";

/** One stage of a traced request (src/protocol/trace-shapes.ts, as the gateway sends it). */
/** One stage of a timeline, as the node sends it (src/protocol/trace-shapes.ts; a type only: nothing is bundled). */
export type Span = TraceSpan;

/** A timeline: the gateway's `trace` (with its round trip) or a slow log entry's spans. */
export interface Timeline {
  spans: Span[];
  /** Spans the node left out over its limit (TRACE_MAX_SPANS). */
  dropped?: number;
  /** Who answered: "node", or "member N". */
  node?: string;
  /** The gateway's own measure, from sending the request to its timeline. */
  roundTripUs?: number;
}

/** Microseconds in words, as `piccolo trace` writes them: 412 µs, 1.41 ms, 61.0 ms, 1.20 s. */
export function formatUs(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** Where the request's last span ends: the length the bars are scaled to. */
export function timelineEndUs(spans: readonly Span[]): number {
  return spans.reduce((m, s) => Math.max(m, s.startUs + s.durationUs), 0);
}

/** A percentage of the request's length, kept inside the track. */
function pct(us: number, totalUs: number): number {
  return totalUs > 0 ? Math.min(100, Math.max(0, (us / totalUs) * 100)) : 0;
}

export function Waterfall(props: { trace: Timeline; label: string }) {
  const t = props.trace;
  const total = timelineEndUs(t.spans);
  const summary = [
    `${t.spans.length} spans, ${formatUs(total)} from receipt to answer`,
    t.node ? `answered by ${t.node}` : "",
    t.dropped ? `${t.dropped} more spans left out` : "",
    t.roundTripUs !== undefined
      ? `round trip seen by the gateway: ${formatUs(t.roundTripUs)} (the rest, ${formatUs(Math.max(0, t.roundTripUs - total))}, is the network between them)`
      : "",
  ]
    .filter((x) => x !== "")
    .join(" · ");
  return html`<figure class="waterfall" data-testid="waterfall" data-total-us=${total}>
    <figcaption class="muted" data-testid="waterfall-summary">${summary}</figcaption>
    <div class="waterfall-wrap" tabindex="0" role="region" aria-label=${props.label}>
      <table>
        <thead>
          <tr><th>Stage</th><th>Where</th><th class="num">Start</th><th class="num">Duration</th><th class="track-head">Timeline</th><th>Detail</th></tr>
        </thead>
        <tbody>
          ${t.spans.map((s, i) => {
            const left = pct(s.startUs, total);
            const width = Math.min(100 - left, pct(s.durationUs, total));
            return html`<tr key=${i} data-testid="span" data-stage=${s.stage} data-start-us=${s.startUs} data-duration-us=${s.durationUs}>
              <td class="stage">${s.stage}</td>
              <td class="nowrap">${s.where}</td>
              <td class="num">${formatUs(s.startUs)}</td>
              <td class="num">${formatUs(s.durationUs)}</td>
              <td class="track-cell" aria-hidden="true">
                <div class="track"><div class=${`bar ${whereKind(s.where)}`}
                  style=${{ left: `${left}%`, width: `${width}%` }}></div></div>
              </td>
              <td class="detail">${s.detail}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>
  </figure>`;
}

/** The bar's colour follows where the stage ran: the IO thread, a worker, another member. */
function whereKind(where: string): string {
  if (where.startsWith("io")) return "io";
  if (where.startsWith("worker")) return "worker";
  if (where.startsWith("member")) return "member";
  return "other";
}
