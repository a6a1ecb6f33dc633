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
# what OPA's bundle plugin owns when it pulls the bundle (`opa_bundle`): data.aidp and every module
# under it; system/main.rego (package system) is loaded from a file at OPA's start instead, because
# a bundle root `system` would also own (and erase) system.authz
OPA_BUNDLE_ROOT = "aidp"
OPA_BUNDLE_MEDIA_TYPE = "application/vnd.openpolicyagent.bundles"


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

    def opa_bundle(self) -> bytes:
        """The bundle as OPA's bundle plugin takes it: a gzipped tarball with a manifest (revision,
        root `aidp`), the modules under aidp/ and the data document at data.aidp. OPA activates
        such a bundle in one storage transaction, so modules and data change together."""
        import io
        import tarfile

        manifest = {"revision": self.revision, "roots": [OPA_BUNDLE_ROOT]}
        files = {
            "/.manifest": json.dumps(manifest, sort_keys=True).encode(),
            f"/{OPA_BUNDLE_ROOT}/data.json": json.dumps(self.data, sort_keys=True).encode(),
        }
        for module_id, source in sorted(self.modules.items()):
            if module_id.startswith(f"{OPA_BUNDLE_ROOT}/"):
                files[f"/{module_id}"] = source.encode()
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(content), 0, 0o644
                tar.addfile(info, io.BytesIO(content))
        return out.getvalue()

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
