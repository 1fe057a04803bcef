/**
 * Where ipcontroller's files live, resolved as IPython and ipyparallel resolve them:
 * an explicit profile directory (--profile-dir, ProfileDir.location, $IPP_PROFILE_DIR) wins;
 * otherwise <ipython dir>/profile_<name>, the IPython dir being --ipython-dir, $IPYTHONDIR or
 * ~/.ipython. Connection files are <profile>/security/ipcontroller[-<cluster id>]-{client,engine}.json,
 * the names ipyparallel's launchers wait for.
 *
 * resolveProfile and connectionFileNames are pure; ensureProfileDirs creates the directories.
 */
import { mkdir, stat, chmod } from "node:fs/promises";
import { basename, isAbsolute, join, resolve } from "node:path";

export interface ProfileInput {
  profile: string;
  profileDir?: string;
  ipythonDir?: string;
}

export interface ProfileContext {
  cwd: string;
  home: string;
}

export interface ProfileLocation {
  /** Profile name (from --profile, or the profile_<name> directory name). */
  name: string;
  dir: string;
  securityDir: string;
  logDir: string;
}

function expandUser(p: string, home: string): string {
  return p === "~" || p.startsWith("~/") ? home + p.slice(1) : p;
}

function absolute(p: string, ctx: ProfileContext): string {
  const e = expandUser(p, ctx.home);
  return isAbsolute(e) ? resolve(e) : resolve(ctx.cwd, e);
}

export function resolveProfile(input: ProfileInput, ctx: ProfileContext): ProfileLocation {
  let dir: string;
  let name = input.profile;
  if (input.profileDir) {
    dir = absolute(input.profileDir, ctx);
    const base = basename(dir);
    if (base.startsWith("profile_")) name = base.slice("profile_".length);
  } else {
    const ipythonDir = absolute(input.ipythonDir || join(ctx.home, ".ipython"), ctx);
    dir = join(ipythonDir, `profile_${input.profile}`);
  }
  return { name, dir, securityDir: join(dir, "security"), logDir: join(dir, "log") };
}

export interface ConnectionFileNames { client: string; engine: string }

/** ipcontroller[-<cluster id>]-{client,engine}.json; explicit names (IPController.*_json_file) win. */
export function connectionFileNames(clusterId: string, overrides: Partial<ConnectionFileNames> = {}): ConnectionFileNames {
  const base = clusterId ? `ipcontroller-${clusterId}` : "ipcontroller";
  return {
    client: overrides.client ?? `${base}-client.json`,
    engine: overrides.engine ?? `${base}-engine.json`,
  };
}

/**
 * The JSON API's token file beside the connection files: ipcontroller[-<cluster id>]-api-token
 * (mode 0600, like the connection files: whoever can read it can run code on the engines).
 */
export function apiTokenFileName(clusterId: string): string {
  return clusterId ? `ipcontroller-${clusterId}-api-token` : "ipcontroller-api-token";
}

export function connectionFilePaths(dir: string, names: ConnectionFileNames): ConnectionFileNames {
  return { client: join(dir, names.client), engine: join(dir, names.engine) };
}

export class ProfileError extends Error {
  readonly code = "IPP_PROFILE_MISSING";
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Make sure the profile directory and its security/ and log/ subdirectories exist, as IPython's
 * ProfileDir does (security is private: mode 0700). Without autoCreate a missing profile is an error.
 */
export async function ensureProfileDirs(loc: ProfileLocation, autoCreate: boolean): Promise<void> {
  if (!(await isDir(loc.dir))) {
    if (!autoCreate) throw new ProfileError(`profile directory ${loc.dir} does not exist (auto_create is off)`);
    await mkdir(loc.dir, { recursive: true });
  }
  await mkdir(loc.securityDir, { recursive: true, mode: 0o700 });
  await chmod(loc.securityDir, 0o700);
  await mkdir(loc.logDir, { recursive: true });
}
