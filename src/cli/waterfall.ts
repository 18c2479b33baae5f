/**
 * A traced request's timeline as a waterfall in the terminal (`piccolo
 * <command> --trace`, docs/tracing.md): one line per span, its bar placed
 * and sized on a scale from the request's receipt to its last span's end.
 *
 *   trace of request 1, answered by node: 3 spans, 212 µs
 *     stage     where     start   duration  |bar|                            detail
 *     received  io          0 µs     18 µs  |██                            | native request, ...
 */
import type { RequestTrace } from "../client/client.js";

/** Width of the bar column, in characters. */
const BAR = 40;

/** Microseconds as the waterfall shows them: "850 µs", "1.24 ms", "2.1 s". */
export function formatUs(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/**
 * The waterfall's lines. `roundTripUs`, when given, is what the client
 * measured from sending to the answer: the network and the client's own
 * work are the difference.
 */
export function renderWaterfall(t: RequestTrace, roundTripUs?: number): string[] {
  const end = t.spans.reduce((m, s) => Math.max(m, s.startUs + s.durationUs), 0);
  const scale = end > 0 ? BAR / end : 0;
  const stageW = Math.max(5, ...t.spans.map((s) => s.stage.length));
  const whereW = Math.max(5, ...t.spans.map((s) => s.where.length));
  const lines = [
    `trace of request ${t.id}, answered by ${t.node}: ${t.spans.length} spans, ${formatUs(end)} from receipt to answer${
      t.dropped > 0 ? ` (${t.dropped} more spans left out)` : ""
    }`,
    `  ${"stage".padEnd(stageW)}  ${"where".padEnd(whereW)}  ${"start".padStart(9)}  ${"duration".padStart(9)}  |${" ".repeat(BAR)}|  detail`,
  ];
  for (const s of t.spans) {
    const from = Math.min(BAR - 1, Math.floor(s.startUs * scale));
    const width = Math.max(1, Math.min(BAR - from, Math.round(s.durationUs * scale)));
    const bar = " ".repeat(from) + "█".repeat(width) + " ".repeat(BAR - from - width);
    lines.push(
      `  ${s.stage.padEnd(stageW)}  ${s.where.padEnd(whereW)}  ${formatUs(s.startUs).padStart(9)}  ${formatUs(s.durationUs).padStart(9)}  |${bar}|  ${s.detail}`,
    );
  }
  if (roundTripUs !== undefined)
    lines.push(
      `  round trip seen by the client: ${formatUs(roundTripUs)} (the rest, ${formatUs(Math.max(0, roundTripUs - end))}, is the network, the answer's write and the client)`,
    );
  return lines;
}
