/**
 * rc.become_dask() / rc.stop_distributed(): upstream's hub starts a dask.distributed Scheduler in
 * its own (Python) process and answers with its address; the client then turns the engines into
 * workers of it. Here the scheduler runs in a Python child process (controllerPython()), started
 * on the first become_dask_request with the client's scheduler_args and kept until
 * stop_distributed_request or the controller stops. The child exits when its stdin closes, so it
 * never outlives the controller.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "../util/log.ts";
import { controllerPython } from "./python.ts";

const SCHEDULER = `
import asyncio, json, sys
async def main():
    from distributed import Scheduler
    s = Scheduler(**json.loads(sys.argv[1]))
    await s.start()
    print(json.dumps({"ip": s.ip, "address": s.address, "port": s.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await s.close()
asyncio.run(main())
`;

export interface DaskScheduler { ip: string; address: string; port: number }

/** A Python-side failure, named as the Python exception (the hub_error's ename). */
export class PythonHelperError extends Error {
  constructor(readonly ename: string, message: string) {
    super(message);
  }
}

export class DaskSchedulerProcess {
  private child: ChildProcess | null = null;
  private running: Promise<DaskScheduler> | null = null;

  constructor(private readonly log: Logger, private readonly python = controllerPython()) {}

  /** The running scheduler, started with `args` if there is none (later args are ignored, as upstream). */
  start(args: Record<string, unknown>): Promise<DaskScheduler> {
    this.running ??= this.launch(args).catch((err) => {
      this.running = null;
      this.child = null;
      throw err;
    });
    return this.running;
  }

  private launch(args: Record<string, unknown>): Promise<DaskScheduler> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.python, ["-c", SCHEDULER, JSON.stringify(args)], { stdio: ["pipe", "pipe", "pipe"] });
      this.child = child;
      let out = "";
      let err = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf("\n");
        if (nl >= 0 && out.startsWith("{")) {
          try {
            const info = JSON.parse(out.slice(0, nl)) as DaskScheduler;
            this.log.info("dask.distributed scheduler running", { address: info.address, pid: child.pid });
            resolve(info);
          } catch (e) {
            reject(new PythonHelperError("RuntimeError", `unexpected output from the dask scheduler: ${String(e)}`));
          }
        }
      });
      child.stderr!.on("data", (d: Buffer) => { err = (err + d.toString()).slice(-20_000); });
      child.on("error", (e) => reject(new PythonHelperError("FileNotFoundError",
        `cannot run ${this.python} for the dask scheduler (${e.message}): rc.become_dask() needs a Python with dask.distributed where the controller runs ($IPP_CONTROLLER_PYTHON, the active virtualenv, or python3 on PATH)`)));
      child.on("exit", (code, sig) => {
        if (this.child === child) {
          this.child = null;
          this.running = null;
        }
        // a Python traceback ends with "ExceptionName: message"
        const last = err.trim().split("\n").pop() ?? "";
        const m = /^([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$/.exec(last);
        reject(new PythonHelperError(m ? m[1]!.split(".").pop()! : "RuntimeError", m ? m[2]! : `the dask scheduler exited (${code ?? sig})${last ? `: ${last}` : ""}`));
        if (code !== 0 && code !== null) this.log.warn("dask.distributed scheduler exited", { code, stderr: err.slice(-2000) });
      });
    });
  }

  /** Stop the scheduler if one runs (its stdin closes, it shuts down; killed if it lingers). */
  stop(): void {
    const child = this.child;
    this.child = null;
    this.running = null;
    if (!child) return;
    this.log.info("stopping the dask.distributed scheduler", { pid: child.pid });
    child.stdin!.end();
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    t.unref();
    child.once("exit", () => clearTimeout(t));
  }
}
