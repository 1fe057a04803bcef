"""rc.shutdown(hub=True): engines stop and the hub answers and announces its shutdown; another
client receives the shutdown_notification (and closes itself, as ipyparallel's client does)."""
import json, sys, time
import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)
rc2 = ipp.Client(sys.argv[1], timeout=30)
notified = []
close_on_shutdown = rc2._notification_handlers["shutdown_notification"]


def record_then_close(msg):
    notified.append({"msg_type": msg["header"]["msg_type"], "content": msg["content"]})
    close_on_shutdown(msg)


rc2._notification_handlers["shutdown_notification"] = record_then_close
err = None
try:
    rc.shutdown(hub=True, block=True)
except Exception as e:
    err = repr(e)
deadline = time.time() + 30
while time.time() < deadline and not notified:
    rc2.spin()
    time.sleep(0.1)
print(json.dumps({"error": err, "other_client_notified": notified, "other_client_closed": rc2._closed}))
