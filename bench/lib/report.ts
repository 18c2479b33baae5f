// Shared pieces of the benchmarks: medians, a progress line, a plain-text
// table, and a small SVG bar chart written by hand (no charting dependency).
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function machine(): { cpu: string; cores: number; node: string; date: string } {
  return { cpu: cpus()[0]?.model ?? "?", cores: cpus().length, node: process.version, date: new Date().toISOString() };
}

/** The short commit of the working tree's HEAD (what the results were measured on), or "?" outside git. */
export function gitCommit(): string {
  const r = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "?";
}

/** One line of progress on stderr, rewritten in place on a terminal. */
export function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${text}`);
  else process.stderr.write(`${text}\n`);
}

export function progressDone(): void {
  if (process.stderr.isTTY) process.stderr.write("\n");
}

export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}

/** The same rows as a GitHub-flavoured markdown table (for reports under bench/results/). */
export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const line = (r: (string | number)[]) => `| ${r.map((c) => String(c).replace(/\|/g, "\\|")).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export interface Bar {
  group: string;
  series: string;
  value: number;
  note?: string;
}

/** Grouped bars: one group per label, one bar per series, value labels on top. */
export function barChart(title: string, unit: string, bars: Bar[]): string {
  const groups = [...new Set(bars.map((b) => b.group))];
  const series = [...new Set(bars.map((b) => b.series))];
  const colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"];
  const max = Math.max(...bars.map((b) => b.value), 1);
  const barW = 28;
  const gap = 24;
  const groupW = series.length * barW + gap;
  // Wide enough for the bars and for the legend (one entry per series, 120 px each).
  const width = Math.max(80 + groups.length * groupW + 20, 80 + series.length * 120 + 20);
  const height = 320;
  const plotH = 220;
  const top = 50;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
    `<line x1="70" y1="${top + plotH}" x2="${width - 10}" y2="${top + plotH}" stroke="#333"/>`,
    `<text x="12" y="${top + plotH / 2}" transform="rotate(-90 12 ${top + plotH / 2})" text-anchor="middle">${escapeXml(unit)}</text>`,
  ];
  groups.forEach((g, gi) => {
    const x0 = 80 + gi * groupW;
    series.forEach((s, si) => {
      const b = bars.find((x) => x.group === g && x.series === s);
      if (!b) return;
      const h = (b.value / max) * plotH;
      const x = x0 + si * barW;
      out.push(
        `<rect x="${x}" y="${top + plotH - h}" width="${barW - 4}" height="${h}" fill="${colors[si % colors.length]}"/>`,
      );
      out.push(
        `<text x="${x + (barW - 4) / 2}" y="${top + plotH - h - 4}" text-anchor="middle" font-size="9">${escapeXml(short(b.value))}</text>`,
      );
      if (b.note)
        out.push(
          `<text x="${x + (barW - 4) / 2}" y="${top + plotH - h - 14}" text-anchor="middle" font-size="8" fill="#666">${escapeXml(b.note)}</text>`,
        );
    });
    out.push(
      `<text x="${x0 + (series.length * barW) / 2}" y="${top + plotH + 16}" text-anchor="middle">${escapeXml(g)}</text>`,
    );
  });
  series.forEach((s, si) => {
    out.push(
      `<rect x="${80 + si * 120}" y="${height - 22}" width="10" height="10" fill="${colors[si % colors.length]}"/>`,
    );
    out.push(`<text x="${95 + si * 120}" y="${height - 13}">${escapeXml(s)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n");
}

function short(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
