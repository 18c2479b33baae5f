// The WAL's file-system seam, over real files, with two faults a real disk
// has: it fills up (ENOSPC after a byte budget, with a short write first, as
// the kernel does), and it counts fsyncs so a test can see group commit.
import { nodeFs, type WalFile, type WalFs } from "../../src/wal/fs.js";

export class FaultyFs implements WalFs {
  written = 0;
  syncs = 0;
  /** Bytes the disk still takes; Infinity for a disk that never fills. */
  constructor(public spaceLeft = Number.POSITIVE_INFINITY) {}

  mkdir = nodeFs.mkdir;
  list = nodeFs.list;
  read = nodeFs.read;
  remove = nodeFs.remove;
  rename = nodeFs.rename;
  syncDir = nodeFs.syncDir;

  async open(path: string): Promise<WalFile> {
    const f = await nodeFs.open(path);
    return {
      write: async (bytes) => {
        if (bytes.length > this.spaceLeft) {
          const fits = Math.max(0, this.spaceLeft);
          await f.write(bytes.subarray(0, fits)); // the part that fitted is on disk
          this.spaceLeft = 0;
          this.written += fits;
          throw Object.assign(new Error(`ENOSPC: no space left on device, write`), {
            code: "ENOSPC",
            errno: -28,
            syscall: "write",
          });
        }
        this.spaceLeft -= bytes.length;
        this.written += bytes.length;
        await f.write(bytes);
      },
      sync: async () => {
        this.syncs++;
        await f.sync();
      },
      truncate: (n) => f.truncate(n),
      close: () => f.close(),
    };
  }
}
