/**
 * Task-scheduler choosers: given the loads of the candidate engines (in LRU order, oldest first),
 * return the index to use. Same semantics as ipyparallel's task_scheduler choosers; the random
 * source is injected so tests are deterministic.
 */
export type TaskScheme = "leastload" | "lru" | "plainrandom" | "twobin" | "weighted";
export const TASK_SCHEMES: readonly TaskScheme[] = ["leastload", "lru", "plainrandom", "twobin", "weighted"];

/** A uniform random number in [0, 1). */
export type Random = () => number;
export type Chooser = (loads: readonly number[], random: Random) => number;

/** A uniform random integer in [0, n). */
export const randint = (n: number, random: Random) => Math.min(n - 1, Math.floor(random() * n));

/** Lowest load; ties go to the first (least recently used). */
export const leastload: Chooser = (loads) => {
  let best = 0;
  for (let i = 1; i < loads.length; i++) if (loads[i]! < loads[best]!) best = i;
  return best;
};

/** Always the front of the line. */
export const lru: Chooser = () => 0;

export const plainrandom: Chooser = (loads, random) => randint(loads.length, random);

/** Two random picks, the less recently used of them. */
export const twobin: Chooser = (loads, random) => Math.min(randint(loads.length, random), randint(loads.length, random));

/** Two picks weighted by inverse load; the lighter of the two. */
export const weighted: Chooser = (loads, random) => {
  const weights = loads.map((l) => 1 / (1e-6 + l));
  const sums: number[] = [];
  let t = 0;
  for (const w of weights) sums.push((t += w));
  const pick = () => {
    const x = random() * t;
    let i = 0;
    while (i < sums.length - 1 && sums[i]! < x) i++;
    return i;
  };
  const a = pick();
  const b = pick();
  return weights[b]! > weights[a]! ? b : a;
};

export const CHOOSERS: Record<TaskScheme, Chooser> = { leastload, lru, plainrandom, twobin, weighted };
