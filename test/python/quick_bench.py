"""Rough figures through a controller (not a test): tiny load-balanced tasks/s, DirectView
tiny tasks/s, apply_sync p50 latency, scatter/gather MB/s.  usage: quick_bench.py CLIENT_JSON N"""
import json, sys, time
import numpy as np
import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)
dv, lv = rc[:], rc.load_balanced_view()
f = lambda: None
lv.apply_sync(f); dv.apply_sync(f)
n = 1000
t0 = time.time(); ars = [lv.apply_async(f) for _ in range(n)]; [a.get() for a in ars]; lb = n / (time.time() - t0)
t0 = time.time(); ars = [dv.apply_async(f) for _ in range(n // 8)]; [a.get() for a in ars]; dtp = n / (time.time() - t0)
e0 = rc[0]; lat = []
for _ in range(200):
    t = time.perf_counter(); e0.apply_sync(f); lat.append(time.perf_counter() - t)
a = np.arange(32 * 1024 * 1024 // 8, dtype=float)  # 32 MiB
t0 = time.time(); dv.scatter("big", a, block=True); sc = a.nbytes / (time.time() - t0) / 1e6
t0 = time.time(); g = dv.gather("big", block=True); ga = a.nbytes / (time.time() - t0) / 1e6
print(json.dumps({"lb_tasks_per_s": round(lb), "direct_tasks_per_s": round(dtp), "apply_sync_p50_ms": round(1000 * float(np.median(lat)), 2), "scatter_MBps_32MiB": round(sc), "gather_MBps_32MiB": round(ga), "gather_ok": bool((g == a).all())}))
