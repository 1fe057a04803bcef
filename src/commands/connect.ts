/**
 * `ipp-operator connect NAME`: puts an EngineCluster's client connection file into an ipyparallel
 * profile, read from the cluster's connection Secret with the user's own Kubernetes credentials, so
 * `ipp.Client(profile=...)` works unchanged. With --port-forward the file points at 127.0.0.1 and
 * this process carries the client ports to the controller pod until interrupted.
 *
 * This module is where configuration is read (argv, KUBECONFIG, IPYTHONDIR, HOME).
 */
import { readFile, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CONNECTION_KEYS } from "../backends/mpi/core/names.ts";
import { resolveProfile } from "../controller/profile.ts";
import { findControllerPod, loadKubeAccess, readConnectTarget } from "../connect/cluster.ts";
import {
  ConnectError, clientInfoFromSecret, forwardedClientInfo, forwardedPorts, notReadyReason, pythonLine, type ClientInfo,
} from "../connect/core/connection.ts";
import { startPortForward } from "../connect/port-forward.ts";
import { ensurePrivateDir, writeFileAtomic } from "../connect/write-file.ts";

export const USAGE = `usage: ipp-operator connect NAME [-n NAMESPACE] [--profile P] [--port-forward]

Reads EngineCluster NAME's connection Secret with your Kubernetes credentials (KUBECONFIG,
~/.kube/config or the pod's service account) and writes ipcontroller-client.json (mode 0600) into
the ipyparallel profile P's security directory, then prints the Python line that connects:
ipp.Client(profile=P). RBAC decides who may connect: you need 'get' on the EngineCluster and on
its Secret NAME-connection.

options:
  -n, --namespace NS   the cluster's namespace (default: the kubeconfig context's, else default)
  --profile P          ipyparallel profile to write into (default: NAME); the directory is
                       $IPYTHONDIR/profile_P/security (IPYTHONDIR defaults to ~/.ipython)
  --port-forward       for a notebook outside the cluster network: forward every client port of
                       the controller through the API server (needs 'list' on pods and 'create' on
                       pods/portforward), point the file at 127.0.0.1 and run until interrupted;
                       a dropped forward is reported and the command exits 1
  --check-seconds S    with --port-forward: how often the controller pod is looked up, so a
                       deleted pod is reported even while no data flows (default: 10)
  --kubeconfig PATH    kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)
  --context NAME       kubeconfig context (default: the current context)
  -h, --help           show this help
`;

export interface ConnectOptions {
  name: string;
  namespace?: string;
  profile: string;
  securityDir: string;
  portForward: boolean;
  checkMs: number;
  kubeconfig?: string;
  context?: string;
}

export class UsageError extends Error {}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const PROFILE_NAME = /^[A-Za-z0-9_.-]+$/;

export function parseConnectArgs(argv: string[], env: { IPYTHONDIR?: string; HOME?: string; cwd?: string }): ConnectOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, strict: true, allowPositionals: true,
      options: {
        namespace: { type: "string", short: "n" },
        profile: { type: "string" },
        "port-forward": { type: "boolean" },
        "check-seconds": { type: "string" },
        kubeconfig: { type: "string" },
        context: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (parsed.positionals.length !== 1) throw new UsageError(parsed.positionals.length === 0 ? "the EngineCluster's NAME is required" : `one NAME expected, got ${parsed.positionals.join(" ")}`);
  const name = parsed.positionals[0]!;
  if (!DNS_LABEL.test(name)) throw new UsageError(`'${name}' is not an EngineCluster name (a DNS label)`);
  if (v.namespace !== undefined && !DNS_LABEL.test(v.namespace)) throw new UsageError(`-n: '${v.namespace}' is not a namespace name`);
  const profile = v.profile ?? name;
  if (!PROFILE_NAME.test(profile)) throw new UsageError(`--profile: '${profile}' is not a profile name (letters, digits, _ . -)`);
  const check = v["check-seconds"] ?? "10";
  if (!/^\d+$/.test(check) || Number(check) < 1 || Number(check) > 3600) throw new UsageError(`--check-seconds: an integer from 1 to 3600, got '${check}'`);
  const loc = resolveProfile({ profile, ipythonDir: env.IPYTHONDIR }, { cwd: env.cwd ?? process.cwd(), home: env.HOME ?? homedir() });
  return {
    name, namespace: v.namespace, profile, securityDir: loc.securityDir, portForward: v["port-forward"] === true, checkMs: Number(check) * 1000,
    kubeconfig: v.kubeconfig, context: v.context,
  };
}

const fileText = (info: ClientInfo) => JSON.stringify(info, null, 2) + "\n";

/** Removes the file only while it still holds what this process wrote (a later connect may own it). */
async function removeIfOurs(path: string, text: string): Promise<void> {
  try { if ((await readFile(path, "utf8")) === text) await rm(path, { force: true }); } catch { /* gone already */ }
}

function waitForSignal(): { promise: Promise<string>; dispose(): void } {
  let done: (s: string) => void = () => undefined;
  const promise = new Promise<string>((r) => { done = r; });
  const onInt = () => done("SIGINT");
  const onTerm = () => done("SIGTERM");
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  return { promise, dispose() { process.off("SIGINT", onInt); process.off("SIGTERM", onTerm); } };
}

export async function connect(opts: ConnectOptions, out: { stdout(s: string): void; stderr(s: string): void }): Promise<number> {
  const access = loadKubeAccess(opts.kubeconfig, opts.context);
  const namespace = opts.namespace ?? access.defaultNamespace;
  const target = await readConnectTarget(access, namespace, opts.name);
  const why = notReadyReason(target.cluster, `${namespace}/${opts.name}`);
  if (why !== undefined) throw new ConnectError(why);
  const info = clientInfoFromSecret(target.secretData, `${namespace}/${target.secretName}`);
  const path = join(opts.securityDir, CONNECTION_KEYS.client);
  await ensurePrivateDir(opts.securityDir);

  if (!opts.portForward) {
    await writeFileAtomic(path, fileText(info));
    out.stderr(`wrote ${path} (EngineCluster ${namespace}/${opts.name})\n`);
    out.stdout(pythonLine(opts.profile) + "\n");
    return 0;
  }

  const pod = await findControllerPod(access, namespace, opts.name);
  const signal = waitForSignal();
  const fwd = await startPortForward(access, { namespace, pod, remotePorts: forwardedPorts(info), podCheckMs: opts.checkMs });
  const text = fileText(forwardedClientInfo(info, fwd.localPorts));
  try {
    await writeFileAtomic(path, text);
    const pairs = [...fwd.localPorts].map(([r, l]) => `${l}->${r}`).join(" ");
    out.stderr(`wrote ${path}; forwarding 127.0.0.1 ${pairs} to pod ${namespace}/${pod} through ${access.server}; Ctrl-C stops\n`);
    out.stdout(pythonLine(opts.profile) + "\n");
    const end = await Promise.race([signal.promise.then((s) => ({ signal: s })), fwd.dropped.then((m) => ({ dropped: m }))]);
    if ("dropped" in end) {
      out.stderr(`ipp-operator connect: ${end.dropped}; the client can no longer reach the controller: run connect again\n`);
      return 1;
    }
    return 0;
  } finally {
    signal.dispose();
    await fwd.close();
    await removeIfOurs(path, text);
  }
}

export async function run(argv: string[]): Promise<number> {
  let opts: ConnectOptions | "help";
  try {
    opts = parseConnectArgs(argv, { IPYTHONDIR: process.env.IPYTHONDIR, HOME: process.env.HOME, cwd: process.cwd() });
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ipp-operator connect: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (opts === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    return await connect(opts, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
  } catch (err) {
    if (err instanceof ConnectError) {
      process.stderr.write(`ipp-operator connect: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}
