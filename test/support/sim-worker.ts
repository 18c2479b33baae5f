// Runs cluster simulations (src/sim/kv-cluster.ts) on a worker thread and
// posts each seed's result back. Tests run the simulator here rather than on
// their own thread: under node:test's runner the same seeds took about 1.5x
// as long (10 seeds: 9.8 s on the test's thread, 6.6 s on a worker; the
// simulator makes a great many promises, and the runner watches them).
import { parentPort, Worker, workerData } from "node:worker_threads";
import { initHash } from "../../src/hash.js";
import { KvSimulation, type KvSimOptions, type KvSimResult } from "../../src/sim/kv-cluster.js";

export type SeedOutcome = { seed: number; result: KvSimResult } | { seed: number; error: string };

interface Job {
  seeds: number[];
  options: Omit<KvSimOptions, "seed">;
}

/** Runs each seed in turn on a worker thread; resolves with every seed's outcome, in order. */
export function simulateSeeds(seeds: number[], options: Omit<KvSimOptions, "seed"> = {}): Promise<SeedOutcome[]> {
  const worker = new Worker(new URL("./sim-worker.js", import.meta.url), {
    workerData: { seeds, options } satisfies Job,
  });
  const outcomes: SeedOutcome[] = [];
  return new Promise((resolve, reject) => {
    worker.on("message", (o: SeedOutcome) => outcomes.push(o));
    worker.on("error", reject);
    worker.on("exit", (code) =>
      code === 0 ? resolve(outcomes) : reject(new Error(`the simulation worker exited with code ${code}`)),
    );
  });
}

async function work(job: Job): Promise<void> {
  await initHash();
  for (const seed of job.seeds) {
    try {
      const result = await new KvSimulation({ ...job.options, seed }).run();
      parentPort!.postMessage({ seed, result } satisfies SeedOutcome);
    } catch (err) {
      parentPort!.postMessage({ seed, error: (err as Error).stack ?? String(err) } satisfies SeedOutcome);
    }
  }
}

if (parentPort !== null && (workerData as Job | null)?.seeds !== undefined) await work(workerData as Job);
