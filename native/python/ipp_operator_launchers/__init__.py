"""ipyparallel launchers for ipp-operator EngineClusters.

``ipp.Cluster(controller_launcher_class="EngineCluster", engine_launcher_class="EngineCluster")``
creates an EngineCluster when the controller starts, sets its engine count through the scale
subresource when engines start, deletes it on stop, and writes the client connection file from
the cluster's connection Secret. See docs/notebooks.md in the ipp-operator repository.
"""
from .launchers import EngineClusterControllerLauncher, EngineClusterEngineSetLauncher, EngineClusterError

__all__ = ["EngineClusterControllerLauncher", "EngineClusterEngineSetLauncher", "EngineClusterError"]
__version__ = "0.1.0"
