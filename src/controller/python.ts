/**
 * The Python interpreter the controller runs its few Python helpers with (the dask.distributed
 * scheduler behind rc.become_dask(), reading ipcontroller_config.py). The controller itself never
 * runs Python code in its process; these helpers are separate processes. Chosen as:
 * $IPP_CONTROLLER_PYTHON, else the active virtualenv's python ($VIRTUAL_ENV/bin/python, which
 * ipcluster and ipp.Cluster pass on when they run from one), else `python3` on PATH.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export function controllerPython(env: NodeJS.ProcessEnv = process.env): string {
  if (env.IPP_CONTROLLER_PYTHON) return env.IPP_CONTROLLER_PYTHON;
  if (env.VIRTUAL_ENV) {
    const p = join(env.VIRTUAL_ENV, "bin", "python");
    if (existsSync(p)) return p;
  }
  return "python3";
}
