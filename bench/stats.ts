/** A single measured value and its unit. `value` is null when it could not be measured (see the notes). */
export interface Figure {
  value: number | null;
  unit: string;
}

/** A distribution: nearest-rank percentiles over `n` samples. */
export interface Distribution {
  unit: string;
  n: number;
  min: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

export const figure = (value: number | null, unit: string): Figure => ({ value: value === null ? null : round(value), unit });

export function distribution(samples: readonly number[], unit: string): Distribution {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  // Nearest rank: the smallest sample with at least q of all samples at or below it.
  const rank = (q: number): number | null => (n === 0 ? null : round(sorted[Math.max(0, Math.ceil(q * n) - 1)]!));
  return {
    unit,
    n,
    min: n ? round(sorted[0]!) : null,
    p50: rank(0.5),
    p95: rank(0.95),
    p99: rank(0.99),
    max: n ? round(sorted[n - 1]!) : null,
    mean: n ? round(sorted.reduce((a, b) => a + b, 0) / n) : null,
  };
}

export function median(samples: readonly number[]): number | null {
  return distribution(samples, "").p50;
}

/** Two decimals: sub-millisecond noise is not information. */
export function round(value: number): number {
  return Math.round(value * 100) / 100;
}
