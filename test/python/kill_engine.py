"""Kill engines mid-task: engine 7's kernel only (its nanny reports the death), engine 6's nanny
and kernel (only the heartbeat notices). Both running tasks must fail with EngineError, rc.ids must
drop both engines, and the rest must keep working.

usage: python kill_engine.py CLIENT_JSON N_ENGINES
"""
import json, os, signal, subprocess, sys, time, traceback
import ipyparallel as ipp

out = {"errors": {}}
n = int(sys.argv[2])
rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(n, timeout=90)
events = []
try:
    rc.register_engine_callback(lambda ev: events.append(ev))
except AttributeError:
    rc._registration_callbacks.append(lambda ev: events.append(ev))
pids = dict(zip(rc.ids, rc[:].apply_sync(lambda: __import__("os").getpid())))
mux = rc[7].apply_async(time.sleep, 60)
lb = rc.load_balanced_view(targets=[6]).apply_async(time.sleep, 60)
time.sleep(1.0)
children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pids[6])], capture_output=True, text=True).stdout.split()
for c in children:
    os.kill(int(c), signal.SIGKILL)  # engine 6's nanny first: no unregistration_request
os.kill(pids[6], signal.SIGKILL)
os.kill(pids[7], signal.SIGKILL)
t0 = time.time()
for name, ar in (("mux", mux), ("lb", lb)):
    try:
        ar.get(timeout=60)
        out[name] = "no error"
    except Exception as e:
        out[name] = getattr(e, "ename", type(e).__name__)
    out[name + "_seconds"] = round(time.time() - t0, 1)
deadline = time.time() + 30
while time.time() < deadline and (6 in rc.ids or 7 in rc.ids):
    time.sleep(0.2)
out["ids"] = rc.ids
out["events"] = sorted((ev.get("event"), ev.get("id")) for ev in events)
out["survivors"] = rc[:].apply_sync(lambda: 1)
out["lb_after"] = rc.load_balanced_view().map_sync(lambda x: x + 1, range(12))
rc.close()
print(json.dumps(out, default=str))
