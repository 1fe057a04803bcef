"""The workflow through a CurveZMQ controller: ids, DirectView execute, load-balanced apply,
scatter/gather, psum with MPI.

usage: python curve_workflow.py CLIENT_JSON N_ENGINES   -> prints one JSON object
"""
import json, sys

import numpy as np
import ipyparallel as ipp

from steps import out, step

n = int(sys.argv[2])
with open(sys.argv[1]) as f:
    info = json.load(f)
out["file_key"] = info.get("key")
out["file_curve_serverkey"] = info.get("curve_serverkey")
rc = ipp.Client(sys.argv[1], timeout=30)
rc.wait_for_engines(n, timeout=90)
out["client_curve"] = bool(getattr(rc, "_config", {}).get("curve_serverkey")) or bool(info.get("curve_serverkey"))
out["session_key"] = rc.session.key.decode() if isinstance(rc.session.key, bytes) else rc.session.key
out["ids"] = rc.ids
view = rc[:]
view.block = True

def execute():
    view.execute("from mpi4py import MPI; import numpy as np; rank = MPI.COMM_WORLD.Get_rank(); size = MPI.COMM_WORLD.Get_size()")
    return {"rank": list(view["rank"]), "size": list(view["size"])}
step("execute", execute)

def lb_apply():
    lv = rc.load_balanced_view()
    return lv.apply_sync(lambda x: x * 6, 7)
step("lb_apply", lb_apply)

def scatter_gather():
    view.scatter("a", np.arange(32, dtype="float"))
    return [float(x) for x in view.gather("a")]
step("scatter_gather", scatter_gather)

def psum_step():
    def psum(a):
        from mpi4py import MPI
        import numpy as np
        locsum = np.sum(a)
        rcv = np.array(0.0, "d")
        MPI.COMM_WORLD.Allreduce([locsum, MPI.DOUBLE], [rcv, MPI.DOUBLE], op=MPI.SUM)
        return float(rcv)
    view.push(dict(psum=psum))
    view.execute("totalsum = psum(a)")
    return list(view["totalsum"])
step("psum", psum_step)

rc.close()
print(json.dumps(out))
