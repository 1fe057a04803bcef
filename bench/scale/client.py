"""The scale benchmark's client: one unmodified ipyparallel Client, driven by bench/scale/run.ts
with one JSON command per line on stdin, one JSON answer per line on stdout. Every measurement
stops at its `cap` (seconds) and then says how far it got.

Commands: connect, wait_ids, direct, broadcast, map, queue_status, lost_prepare, lost_wait, quit.
"""
import json
import statistics
import sys
import time

import ipyparallel as ipp
from ipyparallel import error

rc = None
hung = []


def noop():
    return None


def ipp_sim_hang():
    # a simulated engine never answers a function with this name (bench/sim/engine.ts)
    time.sleep(3600)


def timed_calls(f, count, cap):
    times = []
    t_end = time.time() + cap
    while len(times) < count and time.time() < t_end:
        t0 = time.perf_counter()
        f(t_end - time.time())
        times.append(time.perf_counter() - t0)
    return {"p50": statistics.median(times) if times else None, "calls": len(times), "of": count, "all": times}


def op_connect(c):
    global rc
    t0 = time.time()
    # ipp.Client waits 10 s for the connection reply by default; during a registration burst the
    # hub may answer later (the request waits behind thousands of registrations), so the bench
    # waits as long as its cap, and reports how long the reply took
    rc = ipp.Client(c["file"], timeout=c.get("timeout", 10))
    # the engines in the connection reply; the client learns of later ones by notification only
    return {"sent": t0, "at": time.time(), "ids": len(rc.ids)}


def op_wait_ids(c):
    deadline = time.time() + c["cap"]
    n = c["n"]
    progress = []  # (time, engines in rc.ids) every second, to see where the time goes
    while time.time() < deadline:
        k = len(rc.ids)
        if k >= n:
            return {"at": time.time(), "ids": k, "progress": progress}
        if not progress or time.time() - progress[-1][0] >= 1:
            progress.append((time.time(), k))
        time.sleep(0.01)
    return {"at": None, "ids": len(rc.ids), "progress": progress}


def op_direct(c):
    dv = rc[:]
    return timed_calls(lambda left: dv.apply_async(noop).get(timeout=max(1, left)), c["count"], c["cap"])


def op_broadcast(c):
    bv = rc.broadcast_view(is_coalescing=True)
    return timed_calls(lambda left: bv.apply_async(noop).get(timeout=max(1, left)), c["count"], c["cap"])


def op_queue_status(c):
    return timed_calls(lambda left: rc.queue_status(), c["count"], c["cap"])


def op_map(c):
    lbv = rc.load_balanced_view()
    n = c["tasks"]
    t0 = time.perf_counter()
    amr = lbv.map_async(noop, range(n))
    submitted = time.perf_counter() - t0
    try:
        amr.get(timeout=max(1, c["cap"] - submitted))
        done = n
    except error.TimeoutError:
        done = amr.progress
    dt = time.perf_counter() - t0
    return {"seconds": dt, "done": done, "tasks": n, "tasks_per_s": done / dt, "submit_seconds": submitted}


def op_lost_prepare(c):
    """One direct and one load-balanced never-ending task on each victim."""
    victims = c["victims"]
    hung.clear()
    for v in victims:
        hung.append(rc[v].apply_async(ipp_sim_hang))
    lbv = rc.load_balanced_view(targets=victims)
    for _ in victims:
        hung.append(lbv.apply_async(ipp_sim_hang))
    # the tasks are on the engines once the hub lists them
    deadline = time.time() + 60
    while time.time() < deadline:
        qs = rc.queue_status(targets=victims)
        if sum(qs[v]["queue"] + qs[v]["tasks"] for v in victims) >= 2 * len(victims):
            break
        time.sleep(0.05)
    return {"pending": len(hung)}


def op_lost_wait(c):
    victims = set(c["victims"])
    deadline = time.time() + c["cap"]
    gone_at = None
    while time.time() < deadline:
        if not victims & set(rc.ids):
            gone_at = time.time()
            break
        time.sleep(0.01)
    left = len(victims & set(rc.ids))
    engine_errors = other = hanging = 0
    for ar in hung:
        try:
            ar.get(timeout=max(0.1, deadline - time.time()))
            other += 1
        except error.TimeoutError:
            hanging += 1
        except error.RemoteError as e:
            if e.ename == "EngineError":
                engine_errors += 1
            else:
                other += 1
        except error.EngineError:
            engine_errors += 1
        except Exception:
            other += 1
    # the survivors still work
    alive = rc[:].apply_async(noop).get(timeout=120)
    return {"gone_at": gone_at, "still_listed": left, "engine_errors": engine_errors, "other": other, "hanging": hanging,
            "survivors": len(alive), "ids": len(rc.ids)}


OPS = {k[3:]: v for k, v in globals().items() if k.startswith("op_")}

for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "quit":
        break
    try:
        res = OPS[cmd["op"]](cmd)
    except Exception as e:
        res = {"error": f"{type(e).__name__}: {e}"[:2000]}
    print(json.dumps(res), flush=True)
