"""Shared by the Python drivers the integration tests run: each step's result (or its traceback)
goes into one JSON object that the driver prints at the end, so one failing step doesn't hide the
others."""
import time
import traceback

out = {"errors": {}, "durations": {}}


def step(name, f):
    t0 = time.time()
    try:
        out[name] = f()
    except Exception:
        out["errors"][name] = traceback.format_exc()[-2500:]
    out["durations"][name] = round(time.time() - t0, 3)
