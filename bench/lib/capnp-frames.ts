// Cutting Cap'n Proto frames out of a byte stream for the load generator and
// its trivial endpoint, which only need a frame's length (the node's own
// reader, src/protocol/framing.ts, also bounds and copies every frame).

/** The byte length of the frame starting at `at` (segment table included); -1 while its table is incomplete. */
export function frameBytes(buf: Buffer, at: number): number {
  if (buf.length - at < 8) return -1;
  const segments = buf.readUInt32LE(at) + 1;
  let table = 4 + 4 * segments;
  table += table % 8;
  if (buf.length - at < table) return -1;
  let words = 0;
  for (let s = 0; s < segments; s++) words += buf.readUInt32LE(at + 4 + 4 * s);
  return table + words * 8;
}
