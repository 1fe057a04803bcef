"""rc.shutdown(hub=True): engines stop and the hub answers and announces its shutdown."""
import json, sys, time
import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)
rc2 = ipp.Client(sys.argv[1], timeout=30)
err = None
try:
    rc.shutdown(hub=True, block=True)
except Exception as e:
    err = repr(e)
deadline = time.time() + 10
while time.time() < deadline and rc2._closed is False and rc2.ids:
    rc2.spin()
    time.sleep(0.1)
print(json.dumps({"error": err, "other_client_ids": rc2.ids}))
