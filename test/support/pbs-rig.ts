/**
 * The PBS test rig (scripts/setup/pbs-rig.sh): a real Slurm with its PBS wrappers behind a real
 * sshd on 127.0.0.1. `startPbsRig()` brings it up when it is not (idempotent; installs the Debian
 * packages on first use) and says how to reach it; `stop()` takes it down again only when this
 * call started it. Fails loudly when the rig cannot be provisioned. The rig's state lives outside
 * the checkout (see the script), so it works wherever the repository is cloned.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "./paths.ts";

const run = promisify(execFile);
export const RIG_SCRIPT = join(REPO_ROOT, "scripts/setup/pbs-rig.sh");

export interface PbsRig {
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
  /** Run a command as the batch user on the rig, locally (not over the backend's ssh link). */
  asUser(command: string): Promise<{ stdout: string; code: number }>;
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

export async function startPbsRig(): Promise<PbsRig> {
  const wasUp = (() => {
    try { execFileSync(RIG_SCRIPT, ["status"], { stdio: "ignore", timeout: 30_000 }); return true; } catch { return false; }
  })();
  let out: string;
  try {
    out = (await run(RIG_SCRIPT, ["up"], { timeout: 600_000, maxBuffer: 4 << 20 })).stdout;
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
  const user = need("PBS_RIG_USER");
  const activate = join(need("PBS_RIG_VENV"), "bin", "activate");
  if (!existsSync(activate)) throw new Error(`${activate} missing after ${RIG_SCRIPT} up`);
  const users = join(need("PBS_RIG_DIR"), "users");
  mkdirSync(users, { recursive: true });
  writeFileSync(join(users, String(process.pid)), "");
  const slurmEnv = { ...process.env, SLURM_CONF: need("SLURM_CONF") };
  return {
    dir: need("PBS_RIG_DIR"), host: need("PBS_RIG_HOST"), port: Number(need("PBS_RIG_SSH_PORT")), user,
    home: need("PBS_RIG_HOME"), queue: need("PBS_RIG_QUEUE"),
    privateKey: readFileSync(keyPath, "utf8"),
    knownHosts: readFileSync(need("PBS_RIG_KNOWN_HOSTS"), "utf8"),
    knownHostsWrong: readFileSync(need("PBS_RIG_KNOWN_HOSTS_WRONG"), "utf8"),
    venv: need("PBS_RIG_VENV"),
    env: slurmEnv,
    async asUser(command) {
      try {
        const r = await run("runuser", ["-u", user, "--", "bash", "-c", command], { env: slurmEnv, timeout: 30_000 });
        return { stdout: r.stdout, code: 0 };
      } catch (e) {
        const err = e as { stdout?: string; code?: number };
        return { stdout: err.stdout ?? "", code: typeof err.code === "number" ? err.code : -1 };
      }
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
