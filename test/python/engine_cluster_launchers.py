"""ipp.Cluster driving an EngineCluster through the ipp_operator_launchers entry points.

usage: python engine_cluster_launchers.py PROFILE_DIR N   -> prints one JSON object

The profile's ipcluster_config.py says where the cluster goes (manifest, namespace, kubeconfig);
the launcher classes are given by their entry-point names, as a notebook would. Starts the cluster
(creates the EngineCluster, scales it to N), runs the seed's MPI psum through the client, stops the
cluster (deletes the EngineCluster).
"""
import json
import sys

import ipyparallel as ipp
import numpy as np

from steps import out, step

profile_dir, n = sys.argv[1], int(sys.argv[2])
cluster = ipp.Cluster(profile_dir=profile_dir, controller_launcher_class="EngineCluster",
                      engine_launcher_class="EngineCluster", n=n, engine_timeout=240)

rc = None


def start():
    global rc
    rc = cluster.start_and_connect_sync()
    return {"ids": sorted(rc.ids), "cluster_name": cluster.controller.cluster_name,
            "controller": type(cluster.controller).__name__,
            "engines": [type(e).__name__ for e in cluster.engines.values()]}


def psum():
    view = rc[:]
    view.block = True
    view.scatter("a", np.arange(32, dtype=float))
    view.execute("from mpi4py import MPI\nimport numpy as np\n"
                 "rcv = np.array(0.0, 'd')\n"
                 "MPI.COMM_WORLD.Allreduce([np.array(np.sum(a), 'd'), MPI.DOUBLE], [rcv, MPI.DOUBLE], op=MPI.SUM)\n"
                 "size = MPI.COMM_WORLD.Get_size()")
    return {"totalsum": [float(v) for v in view["rcv"]], "size": [int(s) for s in view["size"]]}


step("start", start)
if rc is not None:
    step("psum", psum)
    rc.close()
step("stop", lambda: (cluster.stop_cluster_sync(), True)[1])
print(json.dumps(out))
