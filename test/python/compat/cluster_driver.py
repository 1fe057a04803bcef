"""Drive ipyparallel's own cluster machinery (ipp.Cluster, Client) against a controller.

Which controller runs is decided by the profile's ipcluster_config.py (written by the test):
    c.LocalControllerLauncher.controller_cmd = [".../bin/ipp-operator", "controller"]
or nothing for upstream ipcontroller. Usage:

    python cluster_driver.py <command> '<json params>'

Commands (each prints one JSON object per line on stdout; the last line has "done": true):
  start     ipp.Cluster(...).start_and_connect_sync(), the reference workflow, then optionally
            stop_engines_sync / restart_engines_sync; leaves the cluster running (shutdown_atexit off)
  attach    ipp.Cluster.from_file(...) of a running cluster, connect, workflow, stop_cluster_sync
  client    a plain Client(profile_dir=, cluster_id=) (e.g. for ipcluster start), workflow
  compare   controller-only behaviour for --reuse / --cluster-id / --ip='*' --location, recorded
            as data so upstream and ipp-operator runs can be compared

Every process the cluster starts (controller, mpiexec, engines, nannies) is reported under "pids"
so the test can make sure none is left behind.
"""

import json
import os
import stat
import sys
import time
import traceback

import ipyparallel as ipp
import psutil

P = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
TIMEOUT = P.get("timeout", 120)
_pids = {}


def emit(**kw):
    print(json.dumps(kw, default=str), flush=True)


def track():
    """Remember every descendant process (pid, create_time)."""
    for p in psutil.Process().children(recursive=True):
        try:
            _pids[p.pid] = p.create_time()
        except psutil.Error:
            pass


def track_pid(pid):
    try:
        p = psutil.Process(pid)
        _pids[pid] = p.create_time()
        for c in p.children(recursive=True):
            _pids[c.pid] = c.create_time()
    except psutil.Error:
        pass


def step(name, f, *a, **kw):
    t0 = time.monotonic()
    try:
        out = f(*a, **kw) or {}
    except Exception:
        track()
        emit(step=name, ok=False, error=traceback.format_exc(), seconds=round(time.monotonic() - t0, 2),
             pids=sorted(_pids.items()))
        emit(done=True, ok=False, pids=sorted(_pids.items()))
        sys.exit(1)
    track()
    emit(step=name, ok=True, seconds=round(time.monotonic() - t0, 2), **out)
    return out


def psum(a):
    import numpy as np
    from mpi4py import MPI

    locsum = np.sum(a)
    rcvBuf = np.array(0.0, "d")
    MPI.COMM_WORLD.Allreduce([locsum, MPI.DOUBLE], [rcvBuf, MPI.DOUBLE], op=MPI.SUM)
    return rcvBuf


def _rank():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank()


def _size():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size()


def workflow(rc, n, mpi=True):
    """The seed notebook's workflow, without IPython magics (view.execute instead of %px)."""
    import numpy as np

    rc.wait_for_engines(n, timeout=TIMEOUT)
    ids = sorted(rc.ids)
    view = rc[:]
    view.block = True
    out = {"ids": ids}
    if mpi:
        out["mpi_size"] = view.apply_sync(_size)
        out["mpi_ranks"] = sorted(view.apply_sync(_rank))
        view.execute("from mpi4py import MPI\nimport numpy as np")
    else:
        view.execute("import numpy as np")
    view.scatter("a", np.arange(4 * n, dtype="float"))
    out["a"] = [x.tolist() for x in view["a"]]
    if mpi:
        view.push({"psum": psum})
        view.execute("totalsum = psum(a)")
        out["totalsum"] = [float(x) for x in view["totalsum"]]
        ar = view.execute("totalsum_exec = psum(a)", block=False)
        ar.wait(TIMEOUT)
        out["totalsum_exec"] = [float(x) for x in view["totalsum_exec"]]
    lview = rc.load_balanced_view()
    out["lb_map"] = lview.map_sync(lambda x: x * 2, range(16))
    out["gather"] = [float(x) for x in view.gather("a")]
    return out


def make_cluster():
    kw = dict(
        profile_dir=P["profile_dir"],
        cluster_id=P["cluster_id"],
        n=P["n"],
        engines=P.get("engines", "mpi"),
        shutdown_atexit=False,
    )
    if P.get("controller_ip"):
        kw["controller_ip"] = P["controller_ip"]
    if P.get("controller_location"):
        kw["controller_location"] = P["controller_location"]
    if P.get("controller_args"):
        kw["controller_args"] = P["controller_args"]
    return ipp.Cluster(**kw)


def files_state(profile_dir, cluster_id):
    sec = os.path.join(profile_dir, "security")
    base = f"ipcontroller-{cluster_id}" if cluster_id else "ipcontroller"
    out = {}
    for kind in ("client", "engine"):
        path = os.path.join(sec, f"{base}-{kind}.json")
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            out[kind] = {"mode": oct(stat.S_IMODE(os.stat(path).st_mode)), "data": data}
        else:
            out[kind] = None
    return out


def cmd_start():
    cluster = make_cluster()
    rc = None

    def start():
        nonlocal rc
        rc = cluster.start_and_connect_sync()
        track_pid(cluster.controller.pid)
        return {"controller_pid": cluster.controller.pid, "controller_cmd": cluster.controller.args[:2],
                "files": files_state(P["profile_dir"], P["cluster_id"])}

    step("start_and_connect_sync", start)
    step("workflow", workflow, rc, P["n"], P.get("engines", "mpi") == "mpi")
    if P.get("stop_restart"):
        def stop_engines():
            cluster.stop_engines_sync()
            deadline = time.monotonic() + TIMEOUT
            while rc.ids and time.monotonic() < deadline:
                time.sleep(0.2)
                rc.spin()
            return {"ids_after_stop": sorted(rc.ids)}

        step("stop_engines_sync", stop_engines)
        step("start_engines_sync", lambda: {"engine_set": cluster.start_engines_sync(P["n"])})
        step("workflow_after_start", workflow, rc, P["n"], P.get("engines", "mpi") == "mpi")

        def restart():
            before = sorted(rc.ids)
            uuids = set(rc._engines.values())
            cluster.restart_engines_sync()
            deadline = time.monotonic() + TIMEOUT
            # engine ids may be reused (MPI ranks); the engines (uuids) must be new ones
            while (len(rc.ids) != P["n"] or set(rc._engines.values()) & uuids) and time.monotonic() < deadline:
                time.sleep(0.2)
                rc.spin()
            return {"ids_before": before, "ids_after": sorted(rc.ids),
                    "new_engines": not (set(rc._engines.values()) & uuids)}

        step("restart_engines_sync", restart)
        step("workflow_after_restart", workflow, rc, P["n"], P.get("engines", "mpi") == "mpi")
    rc.close()
    emit(done=True, ok=True, cluster_file=cluster.cluster_file, pids=sorted(_pids.items()))


def cmd_attach():
    cluster = None

    def attach():
        nonlocal cluster
        cluster = ipp.Cluster.from_file(profile_dir=P["profile_dir"], cluster_id=P["cluster_id"])
        return {"controller_pid": cluster.controller.pid if cluster.controller else None,
                "engine_sets": list(cluster.engines)}

    step("from_file", attach)
    rc = None

    def connect():
        nonlocal rc
        rc = cluster.connect_client_sync()
        return {}

    step("connect_client_sync", connect)
    step("workflow", workflow, rc, P["n"], P.get("engines", "mpi") == "mpi")
    rc.close()
    pid = cluster.controller.pid

    def stop():
        cluster.stop_cluster_sync()
        deadline = time.monotonic() + 30
        while psutil.pid_exists(pid) and time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.Error:
                break
            time.sleep(0.1)
        return {"controller_alive": psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE,
                "files": files_state(P["profile_dir"], P["cluster_id"]),
                "cluster_file_exists": os.path.exists(cluster.cluster_file)}

    step("stop_cluster_sync", stop)
    emit(done=True, ok=True, pids=sorted(_pids.items()))


def cmd_client():
    rc = None

    def connect():
        nonlocal rc
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                rc = ipp.Client(profile_dir=P["profile_dir"], cluster_id=P["cluster_id"])
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return {"files": files_state(P["profile_dir"], P["cluster_id"])}

    step("connect", connect)
    step("workflow", workflow, rc, P["n"], P.get("engines", "mpi") == "mpi")
    rc.close()
    emit(done=True, ok=True, pids=sorted(_pids.items()))


def summarize(files):
    """What a client can observe in the files, without per-run values (ports, key)."""
    out = {}
    for kind, f in files.items():
        if f is None:
            out[kind] = None
            continue
        d = f["data"]
        out[kind] = {
            "mode": f["mode"],
            "keys": sorted(d),
            "interface": d["interface"],
            "location": d["location"],
            "ssh": d["ssh"],
            "key_len": len(d["key"]),
            "signature_scheme": d["signature_scheme"],
            "pack": d["pack"],
            "broadcast_ports": len(d["broadcast"]) if isinstance(d["broadcast"], list) else 1,
        }
    return out


def wait_files():
    deadline = time.monotonic() + 60
    while not all(files_state(P["profile_dir"], P["cluster_id"]).values()):
        if time.monotonic() > deadline:
            raise TimeoutError("connection files did not appear")
        time.sleep(0.1)


def cmd_compare():
    """--reuse / --cluster-id / --ip='*' --location: what a user and a client see."""
    cluster = make_cluster()
    rec = {}

    def run():
        cluster.start_controller_sync()
        track_pid(cluster.controller.pid)
        wait_files()
        first = files_state(P["profile_dir"], P["cluster_id"])
        rec["files"] = summarize(first)
        cluster.start_engines_sync(P["n"])
        rc = ipp.Client(profile_dir=P["profile_dir"], cluster_id=P["cluster_id"])
        rc.wait_for_engines(P["n"], timeout=TIMEOUT)
        rec["task"] = rc[:].apply_sync(lambda: 6 * 7)
        rc.close()
        cluster.stop_engines_sync()
        cluster.stop_controller_sync()
        after_stop = files_state(P["profile_dir"], P["cluster_id"])
        rec["files_after_stop"] = {k: v is not None for k, v in after_stop.items()}
        if P.get("restart"):
            cluster.start_controller_sync()
            track_pid(cluster.controller.pid)
            wait_files()
            time.sleep(1)  # let a controller that rewrites files do so before comparing
            again = files_state(P["profile_dir"], P["cluster_id"])
            rec["files_after_restart_same"] = {
                k: (again[k] is not None and first[k] is not None and again[k]["data"] == first[k]["data"]) for k in ("client", "engine")
            }
            cluster.start_engines_sync(P["n"])
            rc = ipp.Client(profile_dir=P["profile_dir"], cluster_id=P["cluster_id"])
            rc.wait_for_engines(P["n"], timeout=TIMEOUT)
            rec["task_after_restart"] = rc[:].apply_sync(lambda: 6 * 7)
            rc.close()
            cluster.stop_engines_sync()
            cluster.stop_controller_sync()
            final = files_state(P["profile_dir"], P["cluster_id"])
            rec["files_after_second_stop"] = {k: v is not None for k, v in final.items()}
        return {"record": rec}

    step("compare", run)
    emit(done=True, ok=True, pids=sorted(_pids.items()))


if __name__ == "__main__":
    {"start": cmd_start, "attach": cmd_attach, "client": cmd_client, "compare": cmd_compare}[sys.argv[1]]()
