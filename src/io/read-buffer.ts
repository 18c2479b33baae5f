/**
 * Client sockets read into one buffer, shared by every connection of the IO
 * thread (decision 0012), instead of a new buffer per read.
 *
 * Why. For each read, Node gives a socket's 'data' event a buffer of its
 * own: libuv asks for 64 KiB, Node mallocs it, the read fills a few hundred
 * bytes, and the block is shrunk to them with realloc and wrapped in a
 * Buffer the collector must finalize. That is a malloc, a realloc, a JS
 * object and a finalizer per read on the hot path, and the shrunk blocks
 * fragment glibc's heap: after 1M keys loaded over the wire, 9-11 MiB of it
 * was free memory glibc kept between reads still alive, never given back
 * (docs/benchmarks.md, "Memory"). Redis reads into a query buffer it keeps.
 *
 * How. Node's documented `onread` option (a reusable buffer and a callback
 * per read) is offered only to sockets a program creates, not to those a
 * server accepts. Its machinery is the same for both: the socket's stream
 * handle is told to read into a given buffer (`useUserBuffer`), and the
 * socket then calls its `onread` callback, found under three of Node's
 * internal symbols, instead of emitting 'data'. readInto() sets those on an
 * accepted socket, the symbols found on a socket made with `onread`. Where
 * that cannot be done (a Node without them, a TLS socket, whose bytes come
 * decrypted from its own layer), it returns false and the caller listens for
 * 'data' as before: slower, never wrong. test/node/read-buffer.test.ts fails
 * if this Node's plain sockets stop taking the shared buffer.
 *
 * The contract this puts on readers: a chunk is lent. Its bytes are
 * overwritten by the next read of any connection, so nothing may keep a view
 * of it past the callback. The RESP parser copies out what a command not
 * finished within the read still needs (RespParser.push, `lent`); the native
 * frame reader copies every frame it does not finish at once
 * (src/protocol/framing.ts). One buffer serves every connection because a
 * read's callback runs to its end before libuv reads another socket.
 *
 * Pausing works as with 'data': socket.pause() stops reading at once (no
 * further read into the buffer), resume() starts it again.
 */
import { Socket } from "node:net";
import { TLSSocket } from "node:tls";

/** Bytes read at most per read: what libuv asks Node for, so a chunk is never bigger than with 'data'. */
export const READ_BUFFER_BYTES = 64 * 1024;

/** The shared buffer. Made at the first connection: a node that serves no client does not carry it. */
let shared: Buffer | null = null;

/** Node's internal symbols behind `onread`, read off a socket made with it (null: this Node has none). */
const symbols = ((): { buffer: symbol; callback: symbol; generator: symbol } | null => {
  const probe = new Socket({ onread: { buffer: new Uint8Array(1), callback: () => true } } as never);
  const find = (name: string): symbol | undefined =>
    Object.getOwnPropertySymbols(probe).find((s) => s.description === name);
  const buffer = find("kBuffer");
  const callback = find("kBufferCb");
  const generator = find("kBufferGen");
  probe.destroy();
  return buffer && callback && generator ? { buffer, callback, generator } : null;
})();

interface Readable {
  _handle: { useUserBuffer?: (buffer: Uint8Array) => void } | null;
}

/**
 * Makes `socket` read into the shared buffer: `onChunk` gets each read as a
 * view of it, lent for the call. False when this socket cannot (see above):
 * the caller then reads it through 'data'.
 */
export function readInto(socket: Socket, onChunk: (chunk: Uint8Array) => void): boolean {
  const handle = (socket as unknown as Readable)._handle;
  if (symbols === null || socket instanceof TLSSocket || typeof handle?.useUserBuffer !== "function") return false;
  const buffer = (shared ??= Buffer.allocUnsafe(READ_BUFFER_BYTES));
  const s = socket as unknown as Record<symbol, unknown>;
  s[symbols.buffer] = buffer;
  s[symbols.generator] = null;
  s[symbols.callback] = (n: number): boolean => {
    onChunk(new Uint8Array(buffer.buffer, buffer.byteOffset, n));
    // Reading goes on unless the connection paused the socket itself (then pause() stopped it).
    return true;
  };
  handle.useUserBuffer(buffer);
  return true;
}
