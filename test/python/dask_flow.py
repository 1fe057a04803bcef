"""rc.become_dask(): the hub starts a dask.distributed scheduler, the engines become its workers,
a small Dask computation runs on them; then rc.stop_distributed().

usage: python dask_flow.py CLIENT_JSON N_ENGINES   -> prints one JSON object
"""
import json
import sys

import ipyparallel as ipp

from steps import out, step

rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(int(sys.argv[2]), timeout=90)
state = {}


def become():
    client = rc.become_dask()
    state["client"] = client
    client.wait_for_workers(int(sys.argv[2]), timeout=60)  # workers join asynchronously
    info = client.scheduler_info()
    return {"workers": len(info["workers"]), "address_is_tcp": client.scheduler.address.startswith("tcp://")}
step("become_dask", become)


def compute():
    client = state["client"]
    futures = client.map(lambda x: x * x, range(10))
    total = client.submit(sum, futures).result(timeout=60)
    import dask.bag as db
    bag_total = db.from_sequence(range(100), npartitions=4).map(lambda x: x + 1).sum().compute(scheduler=client.get)
    return {"sum_squares": total, "bag_sum": bag_total}
step("compute", compute)


def stop():
    state["client"].close()
    rc.stop_distributed()
    return True
step("stop_distributed", stop)

step("again", lambda: become()["workers"])
step("stop_again", lambda: (state["client"].close(), rc.stop_distributed(), True)[-1])
rc.close()
print(json.dumps(out, default=str))
