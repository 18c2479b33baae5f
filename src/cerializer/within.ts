/**
 * `p`, or a rejection once `ms` pass first (p itself is left to settle on its
 * own). The gateway's periodic asks of its nodes (metrics scrapes, cluster
 * maps) use it so that one slow node never holds up a whole round.
 */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
