/**
 * Redis's glob-style patterns (stringmatchlen), for KEYS and SCAN MATCH:
 *   *  any run of bytes      ?  one byte      [abc] [^abc] [a-z]  a set
 *   \x the byte x itself
 * Matching works on bytes, so binary keys match as Redis matches them.
 */
export function globMatch(p: Uint8Array, s: Uint8Array): boolean {
  return match(p, 0, s, 0, 0);
}

const MAX_NESTING = 1000; // stars nest recursion; bound it as Redis does

function match(p: Uint8Array, pi: number, s: Uint8Array, si: number, depth: number): boolean {
  if (depth > MAX_NESTING) return false;
  while (pi < p.length) {
    const c = p[pi]!;
    if (c === 42 /* * */) {
      while (pi + 1 < p.length && p[pi + 1] === 42) pi++;
      if (pi + 1 === p.length) return true;
      for (let k = si; k <= s.length; k++) if (match(p, pi + 1, s, k, depth + 1)) return true;
      return false;
    }
    if (si >= s.length) return false;
    if (c === 63 /* ? */) {
      si++;
      pi++;
      continue;
    }
    if (c === 91 /* [ */) {
      pi++;
      const not = p[pi] === 94; /* ^ */
      if (not) pi++;
      let hit = false;
      while (pi < p.length && p[pi] !== 93 /* ] */) {
        if (p[pi] === 92 && pi + 1 < p.length) {
          pi++;
          if (p[pi] === s[si]) hit = true;
        } else if (pi + 2 < p.length && p[pi + 1] === 45 /* - */ && p[pi + 2] !== 93) {
          let lo = p[pi]!;
          let hi = p[pi + 2]!;
          if (lo > hi) [lo, hi] = [hi, lo];
          if (s[si]! >= lo && s[si]! <= hi) hit = true;
          pi += 2;
        } else if (p[pi] === s[si]) {
          hit = true;
        }
        pi++;
      }
      if (not) hit = !hit;
      if (!hit) return false;
      pi++; // past ']' (or the end, for an unterminated set, as Redis)
      si++;
      continue;
    }
    if (c === 92 /* \ */ && pi + 1 < p.length) pi++;
    if (p[pi] !== s[si]) return false;
    pi++;
    si++;
  }
  return si === s.length;
}

/** The literal bytes a pattern starts with (before any special character): a scan prefix. */
export function literalPrefix(p: Uint8Array): Uint8Array {
  let i = 0;
  while (i < p.length && p[i] !== 42 && p[i] !== 63 && p[i] !== 91 && p[i] !== 92) i++;
  return p.subarray(0, i);
}
