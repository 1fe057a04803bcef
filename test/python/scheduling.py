"""Retries and dependencies where the outcome depends on the scheduler's policy, for comparing
our controller with upstream's: what each task ends with (or that it is still waiting).

usage: python scheduling.py CLIENT_JSON N_ENGINES   -> prints one JSON object
"""
import json
import sys
import time

import ipyparallel as ipp

from steps import out, step

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)
lv = rc.load_balanced_view()


def always_fails():
    raise RuntimeError("always")


def outcome(ar, timeout=60):
    try:
        ar.get(timeout=timeout)
        return "ok"
    except ipp.error.RemoteError as e:
        return e.ename
    except ipp.error.TimeoutError:
        return "still waiting"


def retries_exhausted_wait():
    # fails on both engines, then waits (blacklisted on both) until its timeout
    with lv.temp_flags(retries=5, timeout=4):
        ar = lv.apply_async(always_fails)
    waiting_at_2s = outcome(ar, timeout=2)
    return [waiting_at_2s, outcome(ar)]
step("retries_exhausted_wait", retries_exhausted_wait)


def retries_used_up():
    # one retry, two engines: fails on each once, then the error itself
    with lv.temp_flags(retries=1):
        ar = lv.apply_async(always_fails)
    return outcome(ar)
step("retries_used_up", retries_used_up)


def after_failed():
    bad = lv.apply_async(always_fails)
    outcome(bad)
    with lv.temp_flags(after=bad):
        ar = lv.apply_async(lambda: 1)
    return outcome(ar)
step("after_failed", after_failed)


def follow_elsewhere():
    # follow a task that ran on one engine, but only the other engine allowed: upstream waits
    a = lv.apply_async(lambda: 1)
    a.get(timeout=30)
    other = [i for i in rc.ids if i != a.engine_id][0]
    with lv.temp_flags(follow=a, targets=[other], timeout=3):
        ar = lv.apply_async(lambda: 2)
    return outcome(ar)
step("follow_elsewhere", follow_elsewhere)


def after_pending_timeout():
    slow = lv.apply_async(time.sleep, 4)
    with lv.temp_flags(after=slow, timeout=1):
        ar = lv.apply_async(lambda: 3)
    r = outcome(ar)
    slow.get(timeout=30)
    return r
step("after_pending_timeout", after_pending_timeout)

rc.close()
print(json.dumps(out, default=str))
