/**
 * ipcontroller_config.py (and ipcontroller_config.json) from the profile directory, as ipcontroller
 * reads them. The controller never executes Python in its own process: a short Python helper,
 * run once at start-up with controllerPython(), loads the file with traitlets' own loaders (so
 * `c.Class.trait = ...`, `load_subconfig`, `.append(...)` behave as upstream) and prints the
 * resulting config as JSON. Each setting then goes through the command-line parser as
 * `--Class.trait=value`, ahead of the real command line (which wins, as in ipcontroller), so it
 * is supported, noted as meaningless or rejected exactly as the same option on the command line.
 * As traitlets does for config files, settings of classes ipcontroller does not configure, and
 * unknown settings of its classes, are not errors: they are noted (logged) and ignored.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { controllerPython } from "./python.ts";

const LOADER = `
import json, os, sys
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader
def plain(v):
    if hasattr(v, "get_value"):  # LazyConfigValue from .append()/.extend()/.update()
        v = v.get_value([] if not getattr(v, "_update", None) else {})
    if isinstance(v, (list, tuple, set)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)
out = {}
for path in sys.argv[1:]:
    d, name = os.path.split(path)
    loader = (JSONFileConfigLoader if name.endswith(".json") else PyFileConfigLoader)(name, d)
    for section, traits in loader.load_config().items():
        if hasattr(traits, "items"):
            out.setdefault(section, {}).update({k: plain(v) for k, v in traits.items()})
print(json.dumps(out))
`;

export class ConfigFileError extends Error {
  readonly code = "IPP_CONFIG_FILE";
}

/** The profile's config files ipcontroller would load, in its order (.py then .json). */
export function configFiles(profileDir: string): string[] {
  return ["ipcontroller_config.py", "ipcontroller_config.json"].map((n) => join(profileDir, n)).filter((p) => existsSync(p));
}

/**
 * `--config=FILE` (BaseIPythonApplication.extra_config_file): an absolute path, or a name looked
 * up as IPython does, in the working directory then the profile directory. Undefined when it is
 * not found (upstream then warns and starts without it).
 */
export function findExtraConfigFile(name: string, cwd: string, profileDir: string): string | undefined {
  if (isAbsolute(name)) return existsSync(name) ? name : undefined;
  return [cwd, profileDir].map((d) => resolve(d, name)).find((p) => existsSync(p));
}

/** A config value as the command line would spell it. */
export function asOptionValue(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean") return v ? "True" : "False";
  if (Array.isArray(v)) return `[${v.map((x) => asOptionValue(x) ?? "").join(",")}]`;
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** `{Class: {trait: value}}` → `--Class.trait=value` options, in file order. */
export function configToArgv(config: Record<string, Record<string, unknown>>): string[] {
  const argv: string[] = [];
  for (const [cls, traits] of Object.entries(config)) {
    if (traits === null || typeof traits !== "object") continue;
    for (const [trait, v] of Object.entries(traits)) {
      const value = asOptionValue(v);
      if (value !== null) argv.push(`--${cls}.${trait}=${value}`);
    }
  }
  return argv;
}

/** Load the files with the helper; throws ConfigFileError (with Python's message) when they cannot be read. */
export function loadConfigFiles(files: string[], python = controllerPython()): Promise<Record<string, Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    execFile(python, ["-c", LOADER, ...files], { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const last = stderr.trim().split("\n").pop() ?? String(err);
        reject(new ConfigFileError(`cannot read ${files.join(", ")} with ${python} (set IPP_CONTROLLER_PYTHON to a Python with traitlets): ${last}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as Record<string, Record<string, unknown>>);
      } catch (e) {
        reject(new ConfigFileError(`unexpected output reading ${files.join(", ")}: ${(e as Error).message}`));
      }
    });
  });
}
