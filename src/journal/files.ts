/**
 * The journal's file calls, synchronous on purpose (but for the IO thread's
 * everysec fsync: syncInBackground).
 *
 * A shard worker runs one loop that never yields to an event loop (it
 * sleeps in Atomics.wait; src/shard/worker.ts), so promise-based IO would
 * never complete there. Its writes are also the point where the worker must
 * wait anyway: under `--fsync always` an answer may not leave before the
 * fsync, and under the other policies before the write(). So the journal
 * calls write() and fdatasync() directly, like Redis's main thread writes
 * its AOF buffer before replying (decision 0221).
 *
 * The interface is a seam for tests, not a mock: the test layer writes the
 * same real files and only adds a byte budget after which writes fail like
 * a full disk (ENOSPC, with a short write first), the one fault the OS
 * cannot be made to produce on demand here.
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";

export interface JournalFile {
  /** Appends all of `bytes[0, length)`, looping over short writes. */
  write(bytes: Uint8Array, length: number): void;
  /** fdatasync: the data, and the size needed to read it back, are durable. */
  sync(): void;
  /**
   * fdatasync on a thread of libuv's pool; `done` runs on this thread's event loop, so only a thread
   * that has one may call it (the IO thread: decision 0111). A close() meanwhile waits for it: the
   * descriptor is not closed, and so not reused by the next open, under a sync still queued.
   */
  syncInBackground(done: (err: Error | null) => void): void;
  truncate(length: number): void;
  close(): void;
}

export interface JournalFs {
  mkdir(dir: string): void;
  list(dir: string): string[];
  read(path: string): Uint8Array;
  size(path: string): number;
  /** Opens for appending, creating the file if needed. */
  open(path: string): JournalFile;
  remove(path: string): void;
  rename(from: string, to: string): void;
  /** fsync on the directory: a created, renamed or deleted name is durable. */
  syncDir(dir: string): void;
}

export const realFs: JournalFs = {
  mkdir: (dir) => void mkdirSync(dir, { recursive: true }),
  list: (dir) => readdirSync(dir),
  read: (path) => new Uint8Array(readFileSync(path)),
  size: (path) => statSync(path).size,
  open(path) {
    const fd = openSync(path, "a");
    let inBackground = 0;
    let closeWhenDone = false;
    return {
      write(bytes, length) {
        for (let at = 0; at < length; ) at += writeSync(fd, bytes, at, length - at);
      },
      sync: () => fdatasyncSync(fd),
      syncInBackground(done) {
        inBackground++;
        fdatasync(fd, (err) => {
          if (--inBackground === 0 && closeWhenDone) {
            try {
              closeSync(fd);
            } catch {
              // closed as the journal asked; the file's data was synced before it let go of it
            }
          }
          done(err);
        });
      },
      truncate: (length) => ftruncateSync(fd, length),
      close() {
        if (inBackground > 0) closeWhenDone = true;
        else closeSync(fd);
      },
    };
  },
  remove: (path) => rmSync(path, { force: true }),
  rename: (from, to) => renameSync(from, to),
  syncDir(dir) {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
};

/**
 * TEST ONLY: real files, but writes fail with ENOSPC once `budget` bytes
 * have been written through this layer (the write that crosses the budget
 * is short: its first bytes reach the file, as on a real full disk).
 * Selected by PICCOLO_TEST_DISK_BUDGET_BYTES; never set in production.
 * `budget.left` is live: a test raises it to "free space" again.
 */
export interface DiskBudget {
  left: number;
}

export function budgetFs(base: JournalFs, budget: DiskBudget): JournalFs {
  const full = (): Error => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
  return {
    ...base,
    open(path) {
      const f = base.open(path);
      return {
        write(bytes, length) {
          if (budget.left <= 0) throw full();
          if (length > budget.left) {
            f.write(bytes, budget.left);
            budget.left = 0;
            throw full();
          }
          budget.left -= length;
          f.write(bytes, length);
        },
        sync: () => f.sync(),
        syncInBackground: (done) => f.syncInBackground(done),
        truncate: (length) => f.truncate(length),
        close: () => f.close(),
      };
    },
  };
}
