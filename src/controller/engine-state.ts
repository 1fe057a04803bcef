/**
 * The engine state file that --restore reads, as upstream's hub writes it:
 * <profile>/log/engines<cluster_id>.json = {"engines": {"<id>": "<uuid>", ...}, "next_id": n}.
 * We add "cluster_id" (upstream ignores unknown keys), so a restart that points at another
 * cluster's file is refused instead of adopting its engines. The file is rewritten (atomically,
 * at most every `debounceMs`) whenever an engine registers or unregisters, with or without
 * --restore, and kept on exit, as upstream keeps it.
 */
import { readFile, rename, writeFile } from "node:fs/promises";

export interface EngineState {
  engines: Array<{ id: number; uuid: string }>;
  nextId: number;
  /** Absent in files upstream wrote. */
  clusterId?: string;
}

export class EngineStateError extends Error {
  readonly code = "IPP_ENGINE_STATE_INVALID";
}

export function parseEngineState(text: string, path: string): EngineState {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (err) {
    throw new EngineStateError(`engine state file ${path} is not JSON: ${(err as Error).message}`);
  }
  const o = j as { engines?: unknown; next_id?: unknown; cluster_id?: unknown };
  if (typeof o !== "object" || o === null || typeof o.engines !== "object" || o.engines === null || Array.isArray(o.engines)) {
    throw new EngineStateError(`engine state file ${path} has no "engines" object`);
  }
  const engines: EngineState["engines"] = [];
  for (const [k, v] of Object.entries(o.engines as Record<string, unknown>)) {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0 || typeof v !== "string" || v === "") throw new EngineStateError(`engine state file ${path}: bad engine entry ${JSON.stringify(k)}`);
    engines.push({ id, uuid: v });
  }
  const maxId = engines.reduce((m, e) => Math.max(m, e.id + 1), 0);
  const nextId = typeof o.next_id === "number" && Number.isInteger(o.next_id) ? Math.max(o.next_id, maxId) : maxId;
  return { engines: engines.sort((a, b) => a.id - b.id), nextId, ...(typeof o.cluster_id === "string" ? { clusterId: o.cluster_id } : {}) };
}

/** Read the state for a restore; absent file = nothing to restore. A file of another cluster is an error naming both ids. */
export async function readEngineState(path: string, clusterId: string): Promise<EngineState | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new EngineStateError(`cannot read engine state file ${path}: ${(err as Error).message}`);
  }
  const state = parseEngineState(text, path);
  if (state.clusterId !== undefined && state.clusterId !== clusterId) {
    throw new EngineStateError(
      `refusing to restore: engine state file ${path} belongs to cluster id '${state.clusterId}', this controller's cluster id is '${clusterId}'`,
    );
  }
  return state;
}

export function formatEngineState(s: EngineState): string {
  const engines: Record<string, string> = {};
  for (const e of s.engines) engines[String(e.id)] = e.uuid;
  return JSON.stringify({ engines, next_id: s.nextId, ...(s.clusterId !== undefined ? { cluster_id: s.clusterId } : {}) });
}

/** Writes the state when asked, coalescing bursts (a thousand registrations = a few writes). */
export class EngineStateWriter {
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly path: string,
    private readonly snapshot: () => EngineState,
    private readonly onError: (err: unknown) => void,
    private readonly debounceMs = 200,
  ) {}

  changed(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.debounceMs);
  }

  /** Write now (after any write in progress). */
  flush(): Promise<void> {
    const text = formatEngineState(this.snapshot());
    this.writing = this.writing.then(async () => {
      const tmp = `${this.path}.${process.pid}.tmp`;
      try {
        await writeFile(tmp, text, { mode: 0o600 });
        await rename(tmp, this.path);
      } catch (err) {
        this.onError(err);
      }
    });
    return this.writing;
  }

  /** Stop: write what is pending, then nothing more. */
  async stop(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      await this.flush();
    }
    this.stopped = true;
    await this.writing;
  }
}
