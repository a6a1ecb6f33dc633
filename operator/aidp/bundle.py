"""The durable copy of what aidp loads into OPA (pure encoding).

One ConfigMap in the operator's namespace holds the Rego modules and the data document,
gzip-compressed (1,000 policies fit well inside the 1 MiB object limit). Whoever restores an OPA
replica (the operator, or `aidp opa-agent` while the operator is down) loads exactly this.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

from aidp.config import MANAGED_BY

KEY = "bundle.json.gz"
REVISION_ANNOTATION = "aidp.io/revision"


@dataclass(frozen=True)
class Bundle:
    """Rego modules by OPA policy id, and the document loaded at data.aidp."""

    modules: dict[str, str]
    data: dict[str, Any]

    @property
    def revision(self) -> str:
        return str(self.data.get("revision", ""))

    def encode(self) -> bytes:
        doc = {"modules": self.modules, "data": self.data}
        return gzip.compress(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), mtime=0)

    @classmethod
    def decode(cls, blob: bytes) -> Bundle:
        doc = json.loads(gzip.decompress(blob))
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("modules"), dict)
            or not isinstance(doc.get("data"), dict)
        ):
            raise ValueError("durable bundle lacks modules or data")
        return cls(modules=doc["modules"], data=doc["data"])


def configmap(name: str, namespace: str, bundle: Bundle) -> dict[str, Any]:
    """The ConfigMap manifest holding `bundle` (binaryData, base64 by the API)."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "annotations": {REVISION_ANNOTATION: bundle.revision},
        },
        "binaryData": {KEY: base64.b64encode(bundle.encode()).decode()},
    }
