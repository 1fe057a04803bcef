"""A client that stays connected: waits for N engines, runs one load-balanced task, prints
{"ids", "msg_id", "result"} as one JSON line, then keeps its connection open until killed.

usage: python hold_client.py CLIENT_JSON N_ENGINES
"""
import json
import sys
import time

import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)


def whoami(x):
    import os
    return [x * 3, os.getpid()]


ar = rc.load_balanced_view().apply_async(whoami, 14)
result = ar.get(timeout=60)
pids = rc[:].apply_sync(lambda: __import__("os").getpid())
print(json.dumps({"ids": rc.ids, "msg_id": ar.msg_ids[0], "result": result[0], "engine_pids": pids}), flush=True)
time.sleep(600)
