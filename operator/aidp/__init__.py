"""aidp: governs which Kubernetes workloads may send data to AI APIs, and under what privacy terms."""

__version__ = "0.1.0"
