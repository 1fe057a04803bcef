"""rc.resubmit of a finished task, and what a client sees for tasks whose hub records were culled
(the controller runs with a small DictDB.record_limit)."""
import json, sys
import ipyparallel as ipp
from steps import out, step

url, n_engines, n_tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rc = ipp.Client(url, timeout=30)
rc.wait_for_engines(n_engines, timeout=90)
view = rc.load_balanced_view()


def double(x):
    return 2 * x


def error_of(f):
    try:
        f()
    except Exception as e:
        return {"type": type(e).__name__, "ename": getattr(e, "ename", None), "evalue": getattr(e, "evalue", str(e))}
    return None


def resubmit():
    ar = view.apply_async(double, 21)
    first = ar.get(timeout=60)
    again = rc.resubmit(ar.msg_ids)
    return {"first": first, "again": again.get(timeout=60), "new_ids": again.msg_ids != ar.msg_ids}


step("resubmit", resubmit)
step("resubmit_unknown", lambda: error_of(lambda: rc.resubmit(["no-such-msg-id"], block=True)))

ars = []


def many():
    ars.extend(view.apply_async(double, i) for i in range(n_tasks))
    return [a.get(timeout=120) for a in ars][-1]


step("many", many)
# a fresh client has no local cache: it asks the hub
fresh = ipp.Client(url, timeout=30)
old, recent = ars[0].msg_ids[0], ars[-1].msg_ids[0]
step("old_status", lambda: fresh.result_status([old], status_only=True))
step("old_result", lambda: error_of(lambda: fresh.get_result(old).get(timeout=30)))
step("recent_result", lambda: fresh.get_result(recent).get(timeout=30))
step("unknown_result", lambda: error_of(lambda: fresh.get_result("no-such-msg-id").get(timeout=30)))
out["old_id"] = old
print(json.dumps(out, default=str))
