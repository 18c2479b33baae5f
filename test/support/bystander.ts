// Another client, served while a misbehaving one does its worst: the
// promise of every limit is that it stops the one who hits it and no one
// else. keepServing() runs real requests one after another until stopped,
// and fails on the first that does not succeed.
import { setTimeout as sleep } from "node:timers/promises";

export interface Bystander {
  /** Stops after the request under way; resolves with how many succeeded, or rejects with the first failure. */
  stop(): Promise<number>;
}

export function keepServing(one: (i: number) => Promise<void>, pauseMs = 20): Bystander {
  let stopped = false;
  let served = 0;
  let failure: unknown = null;
  const loop = (async () => {
    while (!stopped) {
      try {
        await one(served);
        served++;
      } catch (err) {
        failure = err;
        return;
      }
      await sleep(pauseMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      if (failure !== null) throw new Error(`the bystander was not served: ${(failure as Error).message}`);
      return served;
    },
  };
}
