"""Evaluating audit batches with OPA: a running replica, or a private local OPA server."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aidp import render
from aidp.bundle import Bundle
from aidp.devcluster.opa import OpaServer, new_token
from aidp.model import parse_policies
from aidp.opa_loader import Replica, load


class AuditEvaluationError(RuntimeError):
    pass


def replica_evaluator(replica: Replica) -> Any:
    """Decisions from an OPA server that already holds the aidp bundle."""
    local = threading.local()  # one HTTP session per thread: batches are evaluated concurrently

    def evaluate(reviews: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not reviews:
            return []
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = replica.client(timeout=60.0)
        got = client.query_rule({"reviews": list(reviews)}, "aidp/audit", "decisions")
        decisions = got.get("result") if isinstance(got, dict) else None
        if not isinstance(decisions, list) or len(decisions) != len(reviews):
            raise AuditEvaluationError(f"OPA returned no decisions for the batch: {str(got)[:300]}")
        return decisions

    return evaluate


@contextlib.contextmanager
def local_opa(policy_objects: Sequence[Mapping[str, Any]], opa_binary: Path) -> Iterator[Any]:
    """A private OPA server (loopback, TLS, token) holding the policies of the cluster being audited."""
    policies, _errors = parse_policies(policy_objects)  # bad ones: the operator reports them
    data = render.render_data(policies)
    with tempfile.TemporaryDirectory(prefix="aidp-audit-") as tmp:
        server = OpaServer(Path(tmp), new_token(), bin_dir=opa_binary.parent)
        server.start()
        try:
            assert server.ca_file is not None
            replica = Replica(server.url, server.token, server.ca_file)
            load(replica, Bundle(render.policy_modules(), data))
            yield replica_evaluator(replica)
        finally:
            server.stop()
