"""The benchmark workload: one Python client, run unchanged against any controller.

Usage: python workload.py <ipcontroller-client.json> <engines> [--quick] [--cpu NAME=PID ...]
                          [--phases lb,direct,latency,data]
Prints one JSON object with the figures on stdout.

With --cpu, each phase also reports the CPU time (user+sys) that the process tree rooted at PID
spent during the phase, per task or per MiB ("<phase>_cpu_<NAME>"), and the client's own
("<phase>_cpu_client"), so one can see which process bounds a figure.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import ipyparallel as ipp


def noop():
    return None


TICK = os.sysconf("SC_CLK_TCK")


def _proc_table():
    """(children by parent pid, CPU ticks by pid) for every live process, from /proc."""
    children, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        ticks[int(entry)] = sum(int(x) for x in fields[11:15])
    return children, ticks


def tree_pids(root, children=None):
    if children is None:
        children, _ = _proc_table()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_s(root):
    """CPU seconds (user+sys, children reaped included) of root and its live descendants."""
    children, ticks = _proc_table()
    return sum(ticks.get(pid, 0) for pid in tree_pids(root, children)) / TICK


def reset_peak_rss(root):
    """Reset VmHWM of a process tree (Linux: write 5 to clear_refs); False if not permitted."""
    ok = True
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def peak_rss_mb(root):
    """Sum of VmHWM over a process tree, in MB."""
    kb = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all processes, all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK


class Phase:
    """Wall time and per-process CPU time of one phase."""

    def __init__(self, trees):
        self.trees = trees

    def __enter__(self):
        self.rss = "controller" in self.trees and reset_peak_rss(self.trees["controller"])
        self.cpu0 = {name: tree_cpu_s(pid) for name, pid in self.trees.items()}
        self.machine0 = machine_busy_s()
        t = os.times()
        self.client0 = t.user + t.system
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        t = os.times()
        self.cpu = {name: tree_cpu_s(pid) - self.cpu0[name] for name, pid in self.trees.items()}
        self.cpu["client"] = t.user + t.system - self.client0
        # everything else on the machine (other users' processes included)
        self.cpu["others"] = machine_busy_s() - self.machine0 - sum(self.cpu.values())
        self.cpu["idle"] = os.cpu_count() * self.seconds - (machine_busy_s() - self.machine0)
        self.peak_mb = peak_rss_mb(self.trees["controller"]) if self.rss else None
        return False

    def report(self, out, prefix, per, unit):
        for name, s in self.cpu.items():
            out[f"{prefix}_cpu_{name}_{unit}"] = s * 1000 / per
        if self.peak_mb is not None:
            out[f"{prefix}_controller_peak_rss_MB"] = self.peak_mb


def rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def main():
    url_file, engines = sys.argv[1], int(sys.argv[2])
    quick = "--quick" in sys.argv
    trees = {}
    phases = {"lb", "direct", "latency", "data"}
    for i, arg in enumerate(sys.argv):
        if arg == "--phases":
            phases = set(sys.argv[i + 1].split(","))
        if arg == "--cpu":
            name, pid = sys.argv[i + 1].split("=")
            trees[name] = int(pid)
    tasks = 200 if quick else 2000
    sizes_mib = [8] if quick else [8, 64, 256]

    rc = ipp.Client(url_file, timeout=60)
    rc.wait_for_engines(engines, timeout=120)
    ids = sorted(rc.ids)
    out = {"engines": len(ids)}

    # Warm up both paths (pickling, engine-side imports) so the first timed task is not special.
    rc.load_balanced_view().apply_sync(noop)
    rc[:].apply_sync(noop)

    if "lb" in phases:
        lview = rc.load_balanced_view()
        with Phase(trees) as ph:
            t0 = time.perf_counter()
            ars = [lview.apply_async(noop) for _ in range(tasks)]
            submit_s = time.perf_counter() - t0
            for ar in ars:
                ar.get(timeout=300)
        out["lb_tasks_per_s"] = rate(tasks, ph.seconds)
        if trees:
            out["lb_submit_loop_s"] = submit_s
            ph.report(out, "lb", tasks, "ms_per_task")

    if "direct" in phases:
        views = [rc[i] for i in ids]
        with Phase(trees) as ph:
            t0 = time.perf_counter()
            ars = [views[i % len(views)].apply_async(noop) for i in range(tasks)]
            submit_s = time.perf_counter() - t0
            for ar in ars:
                ar.get(timeout=300)
        out["direct_tasks_per_s"] = rate(tasks, ph.seconds)
        if trees:
            out["direct_submit_loop_s"] = submit_s
            ph.report(out, "direct", tasks, "ms_per_task")

    if "latency" in phases:
        one = rc[ids[0]]
        lat = []
        with Phase(trees) as ph:
            for _ in range(200):
                t0 = time.perf_counter()
                one.apply_sync(noop)
                lat.append((time.perf_counter() - t0) * 1000)
        if trees:
            ph.report(out, "latency", 200, "ms_per_call")
        lat.sort()
        out["apply_sync_p50_ms"] = statistics.median(lat)
        out["apply_sync_p99_ms"] = lat[int(len(lat) * 0.99) - 1]

    dview = rc[:]
    for mib in sizes_mib if "data" in phases else []:
        a = np.arange(mib * 1024 * 1024 // 8, dtype="float64")
        with Phase(trees) as ph:
            dview.scatter("bench_a", a, block=True)
        scatter_s = ph.seconds
        if trees:
            ph.report(out, f"scatter_{mib}MiB", mib, "ms_per_MiB")
        with Phase(trees) as ph:
            back = dview.gather("bench_a", block=True)
        gather_s = ph.seconds
        if trees:
            ph.report(out, f"gather_{mib}MiB", mib, "ms_per_MiB")
        assert back.shape == a.shape and back[-1] == a[-1], "gather returned different data"
        out[f"scatter_{mib}MiB_MBps"] = mib * 1.048576 / scatter_s
        out[f"gather_{mib}MiB_MBps"] = mib * 1.048576 / gather_s
        dview.execute("del bench_a", block=True)
        del a, back
    rc.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
