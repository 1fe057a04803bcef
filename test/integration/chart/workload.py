"""A small real workload through an unmodified ipyparallel client, so that every controller metric
the dashboards show has samples: DirectView execute/scatter/gather (mux), load-balanced map and a
failing task (task), a broadcast view execute (broadcast), and one engine paused for a few
heartbeats (heartbeat misses). Prints one JSON line with what it saw.

usage: python workload.py <ipcontroller-client.json> <engines> <heartbeat period ms>
"""
import json
import os
import signal
import sys
import time

import ipyparallel as ipp

url_file, n, period_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rc = ipp.Client(url_file)  # positional: 9.x ignores the url_file keyword
rc.wait_for_engines(n, timeout=120)
dv = rc[:]
dv.execute("import os; x = 1", block=True)
dv.scatter("a", list(range(32)), block=True)
gathered = dv.gather("a", block=True)
lv = rc.load_balanced_view()
squares = lv.map_sync(lambda v: v * v, range(24))
try:
    lv.apply_sync(lambda: 1 / 0)
    failed = None
except Exception as e:  # the remote ZeroDivisionError, wrapped by the client
    failed = type(e).__name__
bv = rc.broadcast_view()
bv.execute("y = 2", block=True)

# One engine stops answering heartbeats for about three periods (fewer than the controller's
# limit of missed beats), then carries on.
pid = rc[n - 1].apply_sync(os.getpid)
os.kill(pid, signal.SIGSTOP)
time.sleep(3.2 * period_ms / 1000)
os.kill(pid, signal.SIGCONT)
after_pause = rc[n - 1].apply_sync(lambda: 42)

print(json.dumps({
    "ids": rc.ids,
    "gathered": len(gathered),
    "squares": sum(squares),
    "failed": failed,
    "after_pause": after_pause,
}))
rc.close()
