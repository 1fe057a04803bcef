"""Connect with a client file whose curve_serverkey is not the controller's.

usage: python curve_wrong_key.py CLIENT_JSON TIMEOUT_S   -> prints one JSON object
"""
import json, sys, time, traceback

import ipyparallel as ipp

out = {}
t0 = time.monotonic()
try:
    rc = ipp.Client(sys.argv[1], timeout=float(sys.argv[2]))
    out["connected"] = True
    out["ids"] = rc.ids
    rc.close()
except Exception as e:
    out["connected"] = False
    out["error_type"] = type(e).__name__
    out["error"] = str(e)[:500]
out["elapsed_s"] = round(time.monotonic() - t0, 2)
print(json.dumps(out))
