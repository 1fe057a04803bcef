"""A new client after a controller restart: the engines it sees, their pids, and the result of a
task that finished before the restart (from the SQLite records).

usage: python after_restore.py CLIENT_JSON N_ENGINES MSG_ID
"""
import json
import sys

import ipyparallel as ipp

from steps import out, step

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)
out["ids"] = rc.ids
step("engine_pids", lambda: rc[:].apply_sync(lambda: __import__("os").getpid()))
step("old_result", lambda: rc.get_result(sys.argv[3]).get(timeout=30)[0])
step("new_task", lambda: rc.load_balanced_view().apply_sync(lambda x: x + 1, 41))
print(json.dumps(out, default=str))
rc.close()
