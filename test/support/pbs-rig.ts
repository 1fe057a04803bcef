/**
 * The PBS test rig (scripts/setup/pbs-rig.sh): a real Slurm with its PBS wrappers behind a real
 * sshd on 127.0.0.1, and (scheduler "openpbs") a real OpenPBS behind the same sshd for a second
 * batch user. `startPbsRig()` brings it up when it is not (idempotent; installs the Debian
 * packages on first use) and says how to reach it; `stop()` takes it down again only when this
 * call started it. Fails loudly when the rig cannot be provisioned. The rig's state lives outside
 * the checkout (see the script), so it works wherever the repository is cloned.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { KubeClient } from "../../src/operator/kube/client.ts";
import { collectionPath, resourceType } from "../../src/operator/kube/resources.ts";
import { REPO_ROOT } from "./paths.ts";

const run = promisify(execFile);
export const RIG_SCRIPT = join(REPO_ROOT, "scripts/setup/pbs-rig.sh");

export type RigScheduler = "slurm" | "openpbs";
/** The schedulers every pbs integration test runs against. */
export const RIG_SCHEDULERS: readonly RigScheduler[] = ["slurm", "openpbs"];

export interface PbsRig {
  scheduler: RigScheduler;
  /** the dialect the backend should detect */
  dialect: "slurm" | "pbspro";
  dir: string;
  host: string;
  port: number;
  user: string;
  home: string;
  queue: string;
  privateKey: string;
  knownHosts: string;
  /** known_hosts naming another key for the same host:port */
  knownHostsWrong: string;
  /** The batch user's virtualenv (ipyparallel 9.2) on the rig: jobs `source <venv>/bin/activate`. */
  venv: string;
  env: NodeJS.ProcessEnv;
  /**
   * Setup lines every engine job needs on this scheduler besides the venv: Debian's OpenMPI has no
   * PBS (tm) support, so under OpenPBS it sees only the machine's 2 cores and must oversubscribe.
   */
  mpiSetup: string[];
  /** Run a command as the batch user on the rig, locally (not over the backend's ssh link). */
  asUser(command: string): Promise<{ stdout: string; code: number }>;
  /** Ids of the batch user's live (not finished) jobs, optionally only those named `name`. */
  liveJobs(name?: string): Promise<string[]>;
  /** The scheduler's state letter for a job (finished jobs included), or undefined when unknown. */
  jobState(id: string): Promise<string | undefined>;
  /** Whether that letter means the job is over (Slurm's wrapper: C; PBS: F). */
  isFinished(state: string | undefined): boolean;
  /**
   * Stop (false) or restart (true) starting jobs, as the scheduler's admin (root): new jobs stay
   * queued, so a test can hold one before it runs (a hold does not stop a running job).
   */
  setScheduling(on: boolean): Promise<void>;
  sshdStop(): Promise<void>;
  sshdStart(): Promise<void>;
  stop(): Promise<void>;
}

const rm = (p: string) => rmSync(p, { force: true });

function parseEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m !== null) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Users of the rig are pid files under <rig>/users: the last one to stop takes it down. */
function alivePid(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

export async function startPbsRig(scheduler: RigScheduler = "slurm"): Promise<PbsRig> {
  const wasUp = (() => {
    try { execFileSync(RIG_SCRIPT, ["status"], { stdio: "ignore", timeout: 30_000 }); return true; } catch { return false; }
  })();
  let out: string;
  try {
    out = (await run(RIG_SCRIPT, [scheduler === "openpbs" ? "openpbs-up" : "up"], { timeout: 1_200_000, maxBuffer: 4 << 20 })).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`the PBS rig could not be started (${RIG_SCRIPT} up): ${err.stderr ?? err.message}`);
  }
  const env = parseEnv(out);
  const need = (k: string): string => {
    const v = env[k];
    if (v === undefined) throw new Error(`${RIG_SCRIPT} up did not report ${k}:\n${out}`);
    return v;
  };
  const keyPath = need("PBS_RIG_KEY");
  if (!existsSync(keyPath)) throw new Error(`${keyPath} missing after ${RIG_SCRIPT} up`);
  const openpbs = scheduler === "openpbs";
  const user = need(openpbs ? "OPENPBS_RIG_USER" : "PBS_RIG_USER");
  const activate = join(need("PBS_RIG_VENV"), "bin", "activate");
  if (!existsSync(activate)) throw new Error(`${activate} missing after ${RIG_SCRIPT} up`);
  const users = join(need("PBS_RIG_DIR"), "users");
  mkdirSync(users, { recursive: true });
  writeFileSync(join(users, String(process.pid)), "");
  const slurmEnv = { ...process.env, SLURM_CONF: need("SLURM_CONF") };
  // the OpenPBS user finds PBS's commands first, as its ssh sessions do
  const userEnv = openpbs ? { ...slurmEnv, PATH: `${need("OPENPBS_RIG_EXEC")}/bin:${process.env.PATH ?? "/usr/bin:/bin"}` } : slurmEnv;
  const asUser = async (command: string): Promise<{ stdout: string; code: number }> => {
    try {
      const r = await run("runuser", ["-u", user, "--", "bash", "-c", command], { env: userEnv, timeout: 30_000 });
      return { stdout: r.stdout, code: 0 };
    } catch (e) {
      const err = e as { stdout?: string; code?: number };
      return { stdout: err.stdout ?? "", code: typeof err.code === "number" ? err.code : -1 };
    }
  };
  const lines = (s: string): string[] => s.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return {
    scheduler, dialect: openpbs ? "pbspro" : "slurm",
    dir: need("PBS_RIG_DIR"), host: need("PBS_RIG_HOST"), port: Number(need("PBS_RIG_SSH_PORT")), user,
    home: need(openpbs ? "OPENPBS_RIG_HOME" : "PBS_RIG_HOME"), queue: need(openpbs ? "OPENPBS_RIG_QUEUE" : "PBS_RIG_QUEUE"),
    privateKey: readFileSync(keyPath, "utf8"),
    knownHosts: readFileSync(need("PBS_RIG_KNOWN_HOSTS"), "utf8"),
    knownHostsWrong: readFileSync(need("PBS_RIG_KNOWN_HOSTS_WRONG"), "utf8"),
    venv: need("PBS_RIG_VENV"),
    env: userEnv,
    mpiSetup: openpbs ? ["export OMPI_MCA_rmaps_base_oversubscribe=1"] : [],
    asUser,
    async liveJobs(name) {
      const q = name === undefined ? "" : openpbs ? ` -N ${name}` : ` -n ${name}`;
      return lines((await asUser(openpbs ? `qselect -u ${user}${q}` : `squeue -h -u ${user}${q} -o %i`)).stdout);
    },
    async jobState(id) {
      if (openpbs) {
        const r = await asUser(`qstat -x -f -F json ${id}`);
        try {
          const jobs = (JSON.parse(r.stdout) as { Jobs?: Record<string, { job_state?: string }> }).Jobs ?? {};
          return Object.values(jobs)[0]?.job_state;
        } catch { return undefined; }
      }
      return new RegExp(`^${id}\\s.*\\s([A-Z])\\s+\\S+\\s*$`, "m").exec((await asUser(`qstat ${id}`)).stdout)?.[1];
    },
    isFinished: (state) => (openpbs ? state === "F" : state === "C"),
    async setScheduling(on) {
      if (openpbs) await run(`${need("OPENPBS_RIG_EXEC")}/bin/qmgr`, ["-c", `set server scheduling = ${on ? "True" : "False"}`], { env: userEnv, timeout: 30_000 });
      else await run("scontrol", ["update", `PartitionName=${need("PBS_RIG_QUEUE")}`, `State=${on ? "UP" : "DOWN"}`], { env: slurmEnv, timeout: 30_000 });
    },
    async sshdStop() { await run(RIG_SCRIPT, ["sshd-stop"], { timeout: 30_000 }); },
    async sshdStart() { await run(RIG_SCRIPT, ["sshd-start"], { timeout: 30_000 }); },
    async stop() {
      rm(join(users, String(process.pid)));
      const others = readdirSync(users).filter((f) => alivePid(Number(f)));
      // take it down only when this process brought it up and no other test process still uses it
      if (!wasUp && others.length === 0) await run(RIG_SCRIPT, ["down"], { timeout: 60_000 });
      else await run(RIG_SCRIPT, ["sshd-start"], { timeout: 30_000 }); // leave it as found
    },
  };
}

/** The Secret a pbs EngineCluster's `credentialsSecret` names: the rig's key and known_hosts. */
export async function createRigSecret(client: KubeClient, namespace: string | undefined, rig: PbsRig, name = "hpc-ssh"): Promise<void> {
  const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
  await client.request("POST", collectionPath(resourceType("v1", "Secret"), namespace), {
    body: {
      apiVersion: "v1", kind: "Secret", metadata: { name, ...(namespace ? { namespace } : {}) }, type: "Opaque",
      data: { "ssh-privatekey": b64(rig.privateKey), known_hosts: b64(rig.knownHosts) },
    },
  });
}
