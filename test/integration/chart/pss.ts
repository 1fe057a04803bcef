/**
 * The restricted Pod Security Standard (Kubernetes 1.25+), as the PodSecurity admission plugin
 * checks a pod spec: returns one message per violation, empty when the spec passes.
 */
type Obj = Record<string, unknown>;
const ALLOWED_VOLUMES = new Set(["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"]);

export function restrictedViolations(podSpec: Obj): string[] {
  const out: string[] = [];
  const psc = (podSpec.securityContext ?? {}) as Obj;
  for (const f of ["hostNetwork", "hostPID", "hostIPC"]) if (podSpec[f] === true) out.push(`${f} is true`);
  for (const v of (podSpec.volumes ?? []) as Obj[]) {
    const type = Object.keys(v).find((k) => k !== "name");
    if (!type || !ALLOWED_VOLUMES.has(type)) out.push(`volume ${String(v.name)} has type ${type}`);
  }
  if (psc.runAsUser === 0) out.push("pod runAsUser is 0");
  const podSeccomp = (psc.seccompProfile as Obj | undefined)?.type;
  if (podSeccomp !== undefined && podSeccomp !== "RuntimeDefault" && podSeccomp !== "Localhost") out.push(`pod seccompProfile ${String(podSeccomp)}`);

  const containers = [...((podSpec.initContainers ?? []) as Obj[]), ...((podSpec.containers ?? []) as Obj[])];
  if (containers.length === 0) out.push("no containers");
  for (const c of containers) {
    const name = String(c.name);
    const sc = (c.securityContext ?? {}) as Obj;
    if (sc.privileged === true) out.push(`${name}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${name}: allowPrivilegeEscalation is not false`);
    const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
    if (nonRoot !== true) out.push(`${name}: runAsNonRoot is not true`);
    if (sc.runAsUser === 0) out.push(`${name}: runAsUser is 0`);
    const seccomp = ((sc.seccompProfile as Obj | undefined)?.type) ?? podSeccomp;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") out.push(`${name}: seccompProfile is ${String(seccomp)}`);
    const caps = (sc.capabilities ?? {}) as { drop?: string[]; add?: string[] };
    if (!(caps.drop ?? []).includes("ALL")) out.push(`${name}: capabilities do not drop ALL`);
    for (const a of caps.add ?? []) if (a !== "NET_BIND_SERVICE") out.push(`${name}: adds capability ${a}`);
    for (const p of (c.ports ?? []) as Obj[]) if (p.hostPort !== undefined && p.hostPort !== 0) out.push(`${name}: hostPort ${String(p.hostPort)}`);
  }
  return out;
}
