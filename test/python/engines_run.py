"""Wait until the client's rc.ids are the expected ids (argv[2], JSON list), then run a task on each
engine (its process id) and one load-balanced task; prints what it saw."""
import json, os, sys, time
import ipyparallel as ipp

expected = sorted(json.loads(sys.argv[2]))
rc = ipp.Client(sys.argv[1], timeout=60)
t0 = time.time()
while sorted(rc.ids) != expected and time.time() - t0 < 60:
    time.sleep(0.2)
out = {"ids": sorted(rc.ids), "uuids": {str(k): v for k, v in rc._engines.items()}}
if out["ids"] == expected:
    out["pids"] = {str(i): rc[i].apply_sync(os.getpid) for i in expected}
    out["sum"] = rc.load_balanced_view().apply_sync(lambda a, b: a + b, 40, 2)
print(json.dumps(out))
rc.close()
