"""Smallest end-to-end check: connect, list ids, run code on every engine."""
import json, sys
import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=20)
rc.wait_for_engines(int(sys.argv[2]) if len(sys.argv) > 2 else 1, timeout=60)
view = rc[:]
ar = view.execute("from mpi4py import MPI; rank = MPI.COMM_WORLD.Get_rank()", block=True)
print(json.dumps({"ids": rc.ids, "ranks": view["rank"]}))
