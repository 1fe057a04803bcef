/** Shared fixtures for the mpi builder and planner tests. */
import { parseEngineCluster, type EngineCluster } from "../../../../src/api/index.ts";

export const UID = "0b6c1c5e-1111-4222-8333-944455556666";

export function rawCluster(spec: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: "ipp.dev/v1alpha1",
    kind: "EngineCluster",
    metadata: { name: "psum", namespace: "science", uid: UID, generation: 1, creationTimestamp: "2026-01-01T00:00:00Z" },
    spec,
    ...extra,
  };
}

export const mpiSpec = (mpi: Record<string, unknown> = {}, engines = 8, controller?: Record<string, unknown>) => ({
  engines,
  backend: { mpi: { image: "ghcr.io/ipp/engine:9.2", ...mpi } },
  ...(controller !== undefined ? { controller } : {}),
});

export function cluster(spec: Record<string, unknown>): EngineCluster {
  const r = parseEngineCluster(rawCluster(spec));
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.value;
}

export const MATERIAL = {
  hmacKey: "5f2b6a8e-1c3d4e5f60718293a4b5c6d7",
  apiToken: "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2YtcmFuZG9t",
  sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
  sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST",
};

export const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
export const unb64 = (s: unknown) => Buffer.from(String(s), "base64").toString("utf8");
