/**
 * The MPI world's shape and its hostfile: pure functions of the spec. Open MPI hostfiles read
 * `host slots=N`; MPICH (hydra) reads `host:N`. Lines are in worker-index order (0, 1, 2, ...)
 * so the output is deterministic and rank placement follows pod ordinals.
 */
import type { MpiBackend } from "../../../api/engine-cluster.ts";

export interface WorldShape {
  engines: number;
  workers: number;
  slotsPerWorker: number;
  implementation: "openmpi" | "mpich";
}

export function worldShape(engines: number, mpi: MpiBackend): WorldShape {
  const workers = mpi.workers ?? Math.ceil(engines / mpi.slotsPerWorker);
  return { engines, workers, slotsPerWorker: mpi.slotsPerWorker, implementation: mpi.implementation };
}

export function hostfileLine(host: string, slots: number, implementation: "openmpi" | "mpich"): string {
  return implementation === "openmpi" ? `${host} slots=${slots}` : `${host}:${slots}`;
}

/** The hostfile for `hosts` (each with slotsPerWorker slots), one line per host, newline-terminated. */
export function renderHostfile(hosts: string[], slots: number, implementation: "openmpi" | "mpich"): string {
  return hosts.map((h) => hostfileLine(h, slots, implementation) + "\n").join("");
}

/** Parse a hostfile back into hosts and slots (used by the local launcher helper and tests). */
export function parseHostfile(text: string): { host: string; slots: number }[] {
  const out: { host: string; slots: number }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const om = /^(\S+)\s+slots=(\d+)$/.exec(line);
    const mp = /^([^\s:]+):(\d+)$/.exec(line);
    const m = om ?? mp;
    if (m === null) throw new Error(`unparseable hostfile line: ${line}`);
    out.push({ host: m[1]!, slots: Number(m[2]) });
  }
  return out;
}
