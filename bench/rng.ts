/**
 * A seeded PRNG (mulberry32): both servers get the same sequence of model durations, and two runs of the
 * bench the same workload.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max]. */
export const between = (random: () => number, min: number, max: number): number => Math.floor(min + random() * (max - min + 1));
