// The course's experiments as data: parsing the "## Experiments" sections of
// docs/*.md, masking the parts of an output that differ from run to run, and
// comparing or rewriting a doc's outputs. Pure (no processes): the runner is
// test/docs/course.test.ts; decision 0330 says why the docs are executable.
//
// The format, for a writer of experiments (docs/README.md repeats it for readers):
//
//   ## Experiments            the section; everything up to the next "## " heading
//   ### 1. A title            one experiment; its ```console blocks run in order
//   ```console mask=num       a block; options after "console": mask=NAME[,NAME] adds masks below
//   $ a command               a command line ("$ " then what the reader types)
//   $ a long one \            a line ending in "\" continues on the next line
//     --more
//   what it printed           every other line is the output of the command above it
//   ```
//
// Every block of a chapter runs in one shell, in order, as one terminal would.
import { readFileSync } from "node:fs";

export interface Command {
  /** The text after "$ ", continuation lines joined with "\n" (as the shell reads them). */
  text: string;
  /** 1-based line of the "$ " line in the doc. */
  line: number;
  /** The doc's output lines (as written, unmasked). */
  expected: string[];
  /** 0-based index of the first output line in the file's lines, and how many there are. */
  outputStart: number;
  outputCount: number;
  /** The masks of its block (ALWAYS plus the block's options). */
  masks: string[];
}

export interface Experiment {
  title: string;
  line: number;
  commands: Command[];
}

export interface Chapter {
  file: string;
  experiments: Experiment[];
}

/**
 * The masks, applied in this order to both the doc's output and the real one
 * before they are compared. ALWAYS are on in every block; the others are a
 * block's `mask=` options. Each replaces what varies from run to run (or from
 * machine to machine) with a placeholder, and leaves the shape: the words, the
 * number of lines, which fields there are.
 */
export const MASKS: Record<string, { pattern: RegExp; placeholder: string; what: string }> = {
  time: {
    pattern: /\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?|"time":\d+|\b\d\d:\d\d:\d\d(\.\d+)?\b/g,
    placeholder: "<time>",
    what: "dates and times (ISO 8601, a log line's epoch milliseconds, hh:mm:ss)",
  },
  pid: {
    pattern: /\bpid \d+|"pid":\d+|process_id:\d+|\bprocess \d+/g,
    placeholder: "<pid>",
    what: "process ids",
  },
  hex: {
    pattern: /\b[0-9a-f]{32,}\b/g,
    placeholder: "<hex>",
    what: "digests: 32 or more hex digits (a backup's sha256)",
  },
  position: {
    pattern: /\b[0-9a-z]{8}(?=\.\d)/g,
    placeholder: "<run>",
    what: "(mask=position) the run id that starts a watch position (mx84wef9.0,3): a new one each time a node starts",
  },
  duration: {
    pattern: /\b\d+m\d+(\.\d+)?s\b|\b\d+(\.\d+)?\s?(ns|µs|us|ms|s)\b/g,
    placeholder: "<duration>",
    what: "durations: a number followed by ns, µs, ms or s, and the shell's `time` (0m0.105s)",
  },
  size: {
    pattern: /\b\d+(\.\d+)?\s?(B|KiB|MiB|GiB|K|M|G)\b/g,
    placeholder: "<size>",
    what: "sizes: a number followed by B, KiB, MiB, GiB (or Redis's K, M, G)",
  },
  rate: {
    pattern: /\b\d+(\.\d+)? (requests per second|requests\/s|ops\/s)/g,
    placeholder: "<rate>",
    what: "throughputs",
  },
  num: {
    pattern: /\b\d+(\.\d+)?\b/g,
    placeholder: "<n>",
    what: "(mask=num) every other number: counters, versions, terms, indexes",
  },
  member: {
    pattern: /\bn[1-9]\b/g,
    placeholder: "<member>",
    what: "(mask=member) a member's name, n1 to n9: which member an election picks",
  },
};
export const ALWAYS = ["time", "pid", "hex", "duration", "size", "rate"];

/**
 * `line` with `masks` applied, trailing spaces dropped, and runs of spaces
 * inside it made one: a table's columns are padded to their values' widths,
 * so a term going from 9 to 10 moves every column after it.
 */
export function mask(line: string, masks: string[]): string {
  let out = line;
  for (const name of Object.keys(MASKS)) {
    if (!masks.includes(name)) continue;
    const m = MASKS[name]!;
    out = out.replace(m.pattern, m.placeholder);
  }
  const indent = /^\s*/.exec(out)![0];
  return (
    indent +
    out
      .slice(indent.length)
      .replace(/[ \t]+/g, " ")
      .replace(/\s+$/, "")
  );
}

/** Output lines without the trailing empty ones (a command's last newline, or a shell's). */
function trimEnd(lines: string[]): string[] {
  const out = [...lines];
  while (out.length > 0 && out[out.length - 1]!.trim() === "") out.pop();
  return out;
}

/**
 * Null when `actual` matches `expected` after `masks`; else a message naming
 * the first line that differs, both masked, for a reader to see what changed.
 */
export function compare(expected: string[], actual: string[], masks: string[]): string | null {
  const e = trimEnd(expected).map((l) => mask(l, masks));
  const a = trimEnd(actual).map((l) => mask(l, masks));
  for (let i = 0; i < Math.max(e.length, a.length); i++) {
    if (e[i] !== a[i])
      return (
        `line ${i + 1} of the output differs (masked with ${masks.join(",")}):\n` +
        `  doc: ${e[i] === undefined ? "(no such line)" : JSON.stringify(e[i])}\n` +
        `  run: ${a[i] === undefined ? "(no such line)" : JSON.stringify(a[i])}\n` +
        `the whole run, unmasked:\n${trimEnd(actual)
          .map((l) => `  | ${l}`)
          .join("\n")}`
      );
  }
  return null;
}

/**
 * The lines to write into the doc for a run: a doc line kept where it matches
 * the run's after masking (so a refresh changes only what changed shape, not
 * every timestamp), the run's line elsewhere.
 */
export function captured(expected: string[], actual: string[], masks: string[]): string[] {
  const a = trimEnd(actual);
  return a.map((line, i) => {
    const e = expected[i];
    return e !== undefined && mask(e, masks) === mask(line, masks) ? e : line.replace(/\s+$/, "");
  });
}

const FENCE = /^```/;

/** The experiments of one markdown text; throws on a malformed block (a doc bug the test reports). */
export function parseChapter(file: string, text: string): Chapter {
  const lines = text.split("\n");
  const experiments: Experiment[] = [];
  let inSection = false;
  let current: Experiment | null = null;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^## /.test(l)) {
      inSection = l.trim() === "## Experiments";
      current = null;
      continue;
    }
    if (!inSection) continue;
    if (/^### /.test(l)) {
      current = { title: l.slice(4).trim(), line: i + 1, commands: [] };
      experiments.push(current);
      continue;
    }
    const open = /^```console(?:\s+(.*))?$/.exec(l);
    if (open === null) {
      // Any other fenced block (```sh, ```text) is skipped whole: it is not run.
      if (FENCE.test(l)) {
        i++;
        while (i < lines.length && !FENCE.test(lines[i]!)) i++;
      }
      continue;
    }
    if (current === null) {
      // Blocks before the first "### ": the section's own setup, run first.
      current = { title: "(the section's setup)", line: i + 1, commands: [] };
      experiments.push(current);
    }
    const masks = [...ALWAYS];
    for (const opt of (open[1] ?? "").split(/\s+/).filter(Boolean)) {
      const m = /^mask=([a-z,]+)$/.exec(opt);
      if (m === null) throw new Error(`${file}:${i + 1}: unknown console block option "${opt}"`);
      for (const name of m[1]!.split(",")) {
        if (!(name in MASKS)) throw new Error(`${file}:${i + 1}: unknown mask "${name}"`);
        masks.push(name);
      }
    }
    i++;
    let cmd: Command | null = null;
    for (; i < lines.length && !FENCE.test(lines[i]!); i++) {
      const b = lines[i]!;
      if (b.startsWith("$ ")) {
        const start = i;
        const parts = [b.slice(2)];
        while (parts[parts.length - 1]!.endsWith("\\") && i + 1 < lines.length && !FENCE.test(lines[i + 1]!)) {
          i++;
          parts.push(lines[i]!);
        }
        cmd = { text: parts.join("\n"), line: start + 1, expected: [], outputStart: i + 1, outputCount: 0, masks };
        current.commands.push(cmd);
      } else if (cmd === null) {
        throw new Error(`${file}:${i + 1}: output before the first "$ " command of a console block`);
      } else {
        cmd.expected.push(b);
        cmd.outputCount++;
      }
    }
    if (i >= lines.length) throw new Error(`${file}: a console block is not closed`);
  }
  return { file, experiments };
}

export function readChapter(path: string, name: string): Chapter {
  return parseChapter(name, readFileSync(path, "utf8"));
}

/** `text` with each command's output replaced by `outputs` (one entry per command, in parse order). */
export function rewriteOutputs(text: string, chapter: Chapter, outputs: (string[] | null)[]): string {
  const lines = text.split("\n");
  const commands = chapter.experiments.flatMap((e) => e.commands);
  // From the bottom up, so earlier indexes stay valid.
  for (let k = commands.length - 1; k >= 0; k--) {
    const out = outputs[k];
    if (out === null || out === undefined) continue;
    const c = commands[k]!;
    lines.splice(c.outputStart, c.outputCount, ...out);
  }
  return lines.join("\n");
}

/**
 * The doc's default ports rewritten to the test's, in a command; `map` from
 * the default (7700) to the port the test's server took. Whole numbers only.
 */
export function rewritePorts(text: string, map: ReadonlyMap<number, number>): string {
  return text.replace(/\b\d{4,5}\b/g, (n) => String(map.get(Number(n)) ?? n));
}

/** The reverse, in an output: the test's ports shown as the reader's. */
export function unrewritePorts(text: string, map: ReadonlyMap<number, number>): string {
  const back = new Map([...map].map(([a, b]) => [b, a]));
  return text.replace(/\b\d{4,5}\b/g, (n) => String(back.get(Number(n)) ?? n));
}
