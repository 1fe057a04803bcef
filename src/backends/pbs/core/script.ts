/**
 * The engines' batch job: its deterministic name and its script, rendered from the spec.
 *
 * Name: `ipp-<cluster tag>-<job generation>` (15 characters, within every PBS flavour's limit):
 * the tag is a hash of the EngineCluster's namespace, name and uid (so jobs of one cluster are
 * recognisable in `qstat` after an operator crash), the generation a hash of everything that shapes
 * the job (engines, scheduler fields, setup, the controller's connection info except the address
 * engines dial). The same spec always
 * renders the same name and script, so the planner can look for an existing job before submitting.
 *
 * Script, in order: `#!/bin/bash`, `#PBS -V`, `-N`, queue, walltime, account, resources, extra
 * directives; then `module load …`, the setup lines, the connection info exported as
 * IPP_CONNECTION_INFO (ipengine ≥ 8 reads it from the environment, so every rank of a large world
 * gets it without a shared file), and `mpiexec -n N ipengine --mpi` so all engines share one MPI
 * world. Directive values are validated again here (a value that is not shell-safe is refused, not
 * rendered); every word of a shell line is single-quoted when it is not plainly safe.
 */
import { createHash } from "node:crypto";
import type { PbsBackend } from "../../../api/engine-cluster.ts";
import { SELECT, SHELL_LINE, SHELL_WORD, WALLTIME, re } from "../../../api/patterns.ts";
import type { Dialect } from "./dialects.ts";
import { shJoin, shQuote } from "./quote.ts";

export const JOB_PREFIX = "ipp-";

export class ScriptError extends Error {
  readonly code = "invalid_pbs_value";
}

const hash = (value: unknown, n: number): string => createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, n);

/** The 5-hex tag shared by every job of one EngineCluster. */
export function clusterTag(c: { namespace: string; name: string; uid: string }): string {
  return hash([c.namespace, c.name, c.uid], 5);
}

/** `ipp-<tag>-` : every job of the cluster starts with it. */
export const jobPrefix = (tag: string): string => `${JOB_PREFIX}${tag}-`;

export interface JobInput {
  engines: number;
  pbs: PbsBackend;
  /** The engines' connection info (ipcontroller-engine.json contents, as JSON text). */
  engineConnection: string;
  /** Extra ipengine arguments (default `--log-level=WARN`: ipengine is chatty at debug). */
  engineArgs?: string[];
}

/**
 * The connection info without the address engines dial (`interface`, `location`): a changed
 * address (a load balancer's, a node's) is for the next submission; running engines keep their
 * connections, so it does not make a new job.
 */
function withoutAddress(engineConnection: string): unknown {
  try {
    const { interface: _i, location: _l, ...rest } = JSON.parse(engineConnection) as Record<string, unknown>;
    return rest;
  } catch {
    return engineConnection;
  }
}

/** The fields that shape the job (not where it is submitted from, nor the resubmit policy, nor the controller's address). */
function shape(j: JobInput): unknown {
  const { host: _h, port: _p, user: _u, credentialsSecret: _c, dialect: _d, resubmitOnWalltime: _r, network, ...rest } = j.pbs;
  return [j.engines, rest, network.mode, withoutAddress(j.engineConnection), j.engineArgs ?? null];
}

export function jobName(tag: string, j: JobInput): string {
  return `${jobPrefix(tag)}${hash(shape(j), 5)}`;
}

function check(field: string, value: string, pattern: string): string {
  if (!re(pattern).test(value)) throw new ScriptError(`spec.backend.pbs.${field}: ${JSON.stringify(value)} is not shell-safe; refusing to render the job script`);
  return value;
}

/** A setup line with every word quoted (words were validated; quoting is defence in depth). */
const quoteLine = (line: string): string => line.split(" ").map(shQuote).join(" ");

export const DEFAULT_ENGINE_ARGS = ["--log-level=WARN"];

/** The `ssh` field of the engines' connection info ("" when absent or unreadable). */
export function engineSsh(engineConnection: string): string {
  try {
    const v = (JSON.parse(engineConnection) as { ssh?: unknown }).ssh;
    return typeof v === "string" ? v : "";
  } catch {
    return "";
  }
}

/** The first of the batch user's usual private keys, for the engines' tunnels. */
export const TUNNEL_KEY_LINE = 'IPP_SSH_KEY=; for k in "$HOME/.ssh/id_ed25519" "$HOME/.ssh/id_ecdsa" "$HOME/.ssh/id_rsa"; do if [ -f "$k" ]; then IPP_SSH_KEY=$k; break; fi; done';
export const TUNNEL_ENGINE_ARGS = '--IPEngine.paramiko=True "--IPEngine.sshkey=$IPP_SSH_KEY"';

export function renderScript(dialect: Dialect, name: string, j: JobInput, clusterLabel: string): string {
  const p = j.pbs;
  const lines = ["#!/bin/bash", `# ipp-operator: engines of EngineCluster ${clusterLabel.replace(/[^A-Za-z0-9_./-]/g, "_")}`, "#PBS -V", `#PBS -N ${check("name", name, SHELL_WORD)}`];
  if (p.queue !== undefined) lines.push(`#PBS -q ${check("queue", p.queue, SHELL_WORD)}`);
  if (p.walltime !== undefined) lines.push(`#PBS -l walltime=${check("walltime", p.walltime, WALLTIME)}`);
  if (p.account !== undefined) lines.push(`#PBS -A ${check("account", p.account, SHELL_WORD)}`);
  if (p.select !== undefined) lines.push(`#PBS -l select=${check("select", p.select, SELECT)}`);
  else if (p.nodes !== undefined || p.ppn !== undefined) {
    const nodes = p.nodes ?? Math.max(1, Math.ceil(j.engines / (p.ppn ?? j.engines)));
    const ppn = p.ppn ?? Math.ceil(j.engines / nodes);
    lines.push(`#PBS -l nodes=${nodes}:ppn=${ppn}`);
  } else lines.push(`#PBS -l ${dialect.defaultResources(j.engines)}`);
  for (const d of p.extraDirectives ?? []) lines.push(`#PBS ${check("extraDirectives", d, SHELL_LINE)}`);
  lines.push("");
  for (const m of p.modules ?? []) lines.push(shJoin(["module", "load", check("modules", m, SHELL_WORD)]));
  for (const s of p.setup ?? []) lines.push(quoteLine(check("setup", s, SHELL_LINE)));
  lines.push(`export IPP_CONNECTION_INFO=${shQuote(j.engineConnection)}`);
  const mpiexec = shJoin(["mpiexec", "-n", String(j.engines), "ipengine", "--mpi", ...(j.engineArgs ?? DEFAULT_ENGINE_ARGS)]);
  if (engineSsh(j.engineConnection) === "") lines.push(`exec ${mpiexec}`);
  else {
    // sshTunnel: every engine tunnels its connections through the login host with paramiko and the
    // batch user's own key (ipengine's openssh tunnels are started under a pty and lose their
    // backgrounded ssh to SIGHUP; its paramiko path needs the key file named)
    lines.push(TUNNEL_KEY_LINE);
    lines.push(`exec ${mpiexec} ${TUNNEL_ENGINE_ARGS}`);
  }
  return lines.join("\n") + "\n";
}

/** qsub's output file for a job, relative to the login user's home. */
export const outputFile = (name: string): string => `${name}.log`;
