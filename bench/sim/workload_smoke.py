"""The client-visible results of a small workload, as one JSON object: run it against real engines
and against simulated ones and compare (test/integration/sim/). Uses only what the simulator can
answer for real: no-op applies (None), `pass` executes, load-balanced maps of no-ops, broadcasts,
queue_status and rc.ids.

    python workload_smoke.py <ipcontroller-client.json> <n_engines>
"""
import json
import sys

import ipyparallel as ipp


def noop(*args):
    return None


def main():
    rc = ipp.Client(sys.argv[1])
    n = int(sys.argv[2])
    rc.wait_for_engines(n, timeout=120)
    out = {"ids": rc.ids == list(range(n))}
    dv = rc[:]
    ar = dv.apply_async(noop)
    out["direct_apply"] = ar.get(timeout=60)
    md = ar.metadata
    out["direct_engine_ids"] = sorted(m["engine_id"] for m in md) == list(range(n))
    out["direct_status"] = sorted({m["status"] for m in md})
    out["direct_started"] = all(m["started"] is not None and m["completed"] is not None for m in md)
    ex = dv.execute("pass", block=False)
    ex.get(timeout=60)
    out["execute_input"] = sorted({m["execute_input"] for m in ex.metadata})
    out["execute_status"] = sorted({m["status"] for m in ex.metadata})
    out["execute_count_increases"] = len({r.execution_count for r in ex.get()}) == 1
    lb = rc.load_balanced_view()
    amr = lb.map_async(noop, range(4 * n))
    res = amr.get(timeout=120)
    out["lb_map"] = [len(res), sorted({repr(x) for x in res})]
    out["lb_engines_used"] = len({m["engine_id"] for m in amr.metadata}) > 1
    bv = rc.broadcast_view()
    br = bv.apply_async(noop)
    out["broadcast"] = br.get(timeout=60)
    bv2 = rc.broadcast_view(is_coalescing=True)
    br2 = bv2.apply_async(noop)
    out["broadcast_coalescing"] = br2.get(timeout=60)
    qs = rc.queue_status()
    out["queue_status_keys"] = sorted(str(k) for k in qs) == sorted([str(i) for i in range(n)] + ["unassigned"])
    out["queue_status_idle"] = all(qs[i]["queue"] == 0 and qs[i]["tasks"] == 0 for i in range(n)) and qs["unassigned"] == 0
    out["completed_total"] = sum(qs[i]["completed"] for i in range(n))
    single = rc[0].apply_sync(noop)
    out["single_apply"] = single
    print(json.dumps(out, sort_keys=True, default=repr))


if __name__ == "__main__":
    main()
