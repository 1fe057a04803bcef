/**
 * Where the test rig's real parts live. Everything is provisioned by scripts/setup/*.sh into the
 * cache outside the clone, ~/.cache/ipp-operator (or $IPP_CACHE_DIR); tests fail loudly when a part is missing instead of
 * skipping, because CI always provisions them first.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CACHE_DIR = process.env.IPP_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "ipp-operator");

export type IppMajor = 8 | 9;
export const IPP_VERSIONS: Record<IppMajor, string> = { 9: "9.2.0", 8: "8.8.0" };

export function venvBin(major: IppMajor, tool: string): string {
  const p = join(CACHE_DIR, "venv", `ipp${major}`, "bin", tool);
  if (!existsSync(p)) throw new Error(`${p} missing: run scripts/setup/python.sh`);
  return p;
}

export const python = (major: IppMajor) => venvBin(major, "python");
