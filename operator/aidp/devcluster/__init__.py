"""A real, local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) and OPA.

Used by the test suite and by `aidp dev up`. Every component runs as a real process on a free
loopback port with generated TLS; nothing is mocked.
"""

from aidp.devcluster.cluster import ControlPlane, ControlPlaneError
from aidp.devcluster.opa import OpaServer

__all__ = ["ControlPlane", "ControlPlaneError", "OpaServer"]
