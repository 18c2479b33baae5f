/**
 * The few file-system calls the WAL makes, behind an interface. Production
 * uses node:fs; tests use the same real files through a wrapper that can
 * fail like a full disk (ENOSPC) after a byte budget, or drop what was not
 * fsynced (a power cut). A seam, not a mock: the bytes still go to a real
 * file on a real disk.
 */
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";

export interface WalFile {
  /** Appends all of `bytes` (looping over short writes). */
  write(bytes: Uint8Array): Promise<void>;
  /** fdatasync: the data, and the size needed to read it back, are durable. */
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface WalFs {
  mkdir(dir: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  read(path: string): Promise<Uint8Array>;
  /** Opens for appending, creating the file if needed. */
  open(path: string): Promise<WalFile>;
  remove(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** fsync on the directory: a created, renamed or deleted name is durable. */
  syncDir(dir: string): Promise<void>;
}

export const nodeFs: WalFs = {
  async mkdir(dir) {
    await mkdir(dir, { recursive: true });
  },
  list: (dir) => readdir(dir),
  async read(path) {
    return new Uint8Array(await readFile(path));
  },
  async open(path) {
    const h = await open(path, "a");
    return {
      async write(bytes) {
        for (let at = 0; at < bytes.length; ) {
          const { bytesWritten } = await h.write(bytes, at, bytes.length - at);
          at += bytesWritten;
        }
      },
      sync: () => h.datasync(),
      truncate: (length) => h.truncate(length),
      close: () => h.close(),
    };
  },
  async remove(path) {
    await rm(path, { force: true });
  },
  rename: (from, to) => rename(from, to),
  async syncDir(dir) {
    const h = await open(dir, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  },
};

/**
 * The same calls made synchronously: for a WAL on a thread of its own (a
 * group worker, src/cluster/group-worker.ts), where blocking for the write
 * and the fsync costs nothing the thread could have done meanwhile (what
 * arrives waits in its ring, and its next round takes it all), and saves two
 * hops to libuv's thread pool and back per round: on a busy machine each hop
 * is a thread wake-up waiting for a core (decision 0191). Never on a thread
 * that serves sockets.
 */
export const blockingFs: WalFs = {
  async mkdir(dir) {
    mkdirSync(dir, { recursive: true });
  },
  async list(dir) {
    return readdirSync(dir);
  },
  async read(path) {
    return new Uint8Array(readFileSync(path));
  },
  async open(path) {
    const fd = openSync(path, "a");
    return {
      async write(bytes) {
        for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
      },
      async sync() {
        fdatasyncSync(fd);
      },
      async truncate(length) {
        ftruncateSync(fd, length);
      },
      async close() {
        closeSync(fd);
      },
    };
  },
  async remove(path) {
    rmSync(path, { force: true });
  },
  async rename(from, to) {
    renameSync(from, to);
  },
  async syncDir(dir) {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
};
