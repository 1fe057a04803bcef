"""The benchmark workload: one Python client, run unchanged against any controller.

Usage: python workload.py <ipcontroller-client.json> <engines> [--quick]
Prints one JSON object with the figures on stdout.
"""
import json
import statistics
import sys
import time

import numpy as np
import ipyparallel as ipp


def noop():
    return None


def rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def main():
    url_file, engines = sys.argv[1], int(sys.argv[2])
    quick = "--quick" in sys.argv
    tasks = 200 if quick else 2000
    sizes_mib = [8] if quick else [8, 64, 256]

    rc = ipp.Client(url_file, timeout=60)
    rc.wait_for_engines(engines, timeout=120)
    ids = sorted(rc.ids)
    out = {"engines": len(ids)}

    # Warm up both paths (pickling, engine-side imports) so the first timed task is not special.
    rc.load_balanced_view().apply_sync(noop)
    rc[:].apply_sync(noop)

    lview = rc.load_balanced_view()
    t0 = time.perf_counter()
    ars = [lview.apply_async(noop) for _ in range(tasks)]
    for ar in ars:
        ar.get(timeout=300)
    out["lb_tasks_per_s"] = rate(tasks, time.perf_counter() - t0)

    views = [rc[i] for i in ids]
    t0 = time.perf_counter()
    ars = [views[i % len(views)].apply_async(noop) for i in range(tasks)]
    for ar in ars:
        ar.get(timeout=300)
    out["direct_tasks_per_s"] = rate(tasks, time.perf_counter() - t0)

    one = rc[ids[0]]
    lat = []
    for _ in range(200):
        t0 = time.perf_counter()
        one.apply_sync(noop)
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    out["apply_sync_p50_ms"] = statistics.median(lat)
    out["apply_sync_p99_ms"] = lat[int(len(lat) * 0.99) - 1]

    dview = rc[:]
    for mib in sizes_mib:
        a = np.arange(mib * 1024 * 1024 // 8, dtype="float64")
        t0 = time.perf_counter()
        dview.scatter("bench_a", a, block=True)
        scatter_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = dview.gather("bench_a", block=True)
        gather_s = time.perf_counter() - t0
        assert back.shape == a.shape and back[-1] == a[-1], "gather returned different data"
        out[f"scatter_{mib}MiB_MBps"] = mib * 1.048576 / scatter_s
        out[f"gather_{mib}MiB_MBps"] = mib * 1.048576 / gather_s
        dview.execute("del bench_a", block=True)
        del a, back
    rc.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
