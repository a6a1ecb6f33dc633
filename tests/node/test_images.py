"""The images of `make images` (no Docker): the aidp image agrees with the Dockerfile, and runs.

The Dockerfile stays for users with Docker; this checks that the image built here from Debian's
Python and aidp's wheel has the Dockerfile's user, entrypoint and command, and that `aidp version`
in a pod on the node prints what the checkout's aidp prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from lightkube.codecs import from_dict

from aidp import paths
from tests.node.conftest import NodeBed, require_node_machine
from tests.waiting import wait_for

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]


def image_config(archive: Path) -> dict[str, Any]:
    """The OCI image configuration inside an OCI layout archive (one manifest)."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> Any:
            member = tar.extractfile(f"./blobs/{digest.replace(':', '/')}")
            assert member is not None
            return json.load(member)

        index_file = tar.extractfile("./index.json")
        assert index_file is not None
        manifest = blob(json.load(index_file)["manifests"][0]["digest"])
        config: dict[str, Any] = blob(manifest["config"]["digest"])
    return config


def dockerfile_final_stage() -> dict[str, Any]:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    user = re.search(r"^USER\s+(\S+)", final, re.M)
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])", final, re.M)
    cmd = re.search(r"^CMD\s+(\[.*\])", final, re.M)
    assert user and entry and cmd, "the Dockerfile's final stage has USER, ENTRYPOINT and CMD"
    return {"User": user.group(1), "Entrypoint": json.loads(entry.group(1)), "Cmd": json.loads(cmd.group(1))}


def test_aidp_image_has_the_dockerfiles_user_entrypoint_and_command() -> None:
    require_node_machine()
    config = image_config(paths.testbin_dir().parent / "images" / "aidp.tar")["config"]
    want = dockerfile_final_stage()
    assert config["User"] == want["User"] == "65532:65532"
    # the Dockerfile names `aidp` on PATH (/opt/aidp/bin); the image gives the full path
    assert [Path(e).name for e in config["Entrypoint"]] == want["Entrypoint"] == ["aidp"]
    assert config["Entrypoint"] == ["/opt/aidp/bin/aidp"]
    assert config["Cmd"] == want["Cmd"]
    assert any(e.startswith("PATH=/opt/aidp/bin:") for e in config["Env"])


def test_aidp_version_in_a_pod_is_the_checkouts(node_bed: NodeBed) -> None:
    local = subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", "version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    ns = node_bed.namespace(governed_sa=False)
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "aidp-version", "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True},
                "containers": [
                    {
                        "name": "aidp",
                        "image": "aidp.local/aidp:dev",
                        "imagePullPolicy": "Never",
                        "args": ["version"],
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                        },
                    }
                ],
            },
        }
        node_bed.client.create(from_dict(pod))

        def finished() -> str:
            res = node_bed.kubectl("-n", ns, "get", "pod", "aidp-version", "-o", "jsonpath={.status.phase}")
            return res.stdout if res.stdout in ("Succeeded", "Failed") else ""

        phase = wait_for(finished, timeout=120, interval=0.5, what="the aidp version pod to finish")
        logs = node_bed.kubectl("-n", ns, "logs", "aidp-version")
        assert phase == "Succeeded", logs.stdout + logs.stderr
        assert logs.stdout.strip() == local
    finally:
        node_bed.drop_namespace(ns)
