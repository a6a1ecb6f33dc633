"""Evaluating audit batches with OPA: a running replica, or a private local OPA server."""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from aidp import render
from aidp.bundle import Bundle
from aidp.devcluster.opa import OpaServer, new_token
from aidp.model import Policy, parse_policies

if TYPE_CHECKING:  # opa_loader pulls in opa-python-client and requests: only for replicas
    from aidp.opa_loader import Replica

DECISIONS_PATH = "/v1/data/aidp/audit/decisions"


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
        return _checked(got.get("result") if isinstance(got, dict) else None, reviews, got)

    return evaluate


def _checked(decisions: Any, reviews: Sequence[Any], got: Any) -> list[dict[str, Any]]:
    if not isinstance(decisions, list) or len(decisions) != len(reviews):
        raise AuditEvaluationError(f"OPA returned no decisions for the batch: {str(got)[:300]}")
    return decisions


def direct_evaluator(url: str, token: str, ca_file: Path) -> Any:
    """Decisions from the private OPA server over one keep-alive HTTPS connection per thread
    (the standard library's client: opa-python-client would import aiohttp, 0.15 s of start-up)."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(ca_file))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    local = threading.local()

    def evaluate(reviews: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not reviews:
            return []
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPSConnection(
                parts.hostname or "127.0.0.1", parts.port, timeout=60.0, context=context
            )
        conn.request("POST", DECISIONS_PATH, msgspec.json.encode({"input": {"reviews": reviews}}), headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise AuditEvaluationError(f"OPA answered {response.status}: {body[:300]!r}")
        got = msgspec.json.decode(body)
        return _checked(got.get("result") if isinstance(got, dict) else None, reviews, got)

    return evaluate


def write_bundle(bundle: Bundle, root: Path) -> Path:
    """The bundle as files `opa run` loads at start: each module under its policy id, and the
    data document as aidp/data.json and aidp_policies/data.json (mounted at data.aidp and
    data.aidp_policies: render.opa_documents)."""
    for policy_id, source in bundle.modules.items():
        path = root / policy_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for where, doc in render.opa_documents(bundle.data).items():
        (root / where).mkdir(parents=True, exist_ok=True)
        (root / where / "data.json").write_text(json.dumps(doc))
    return root


class LocalOpa:
    """The evaluator of a private OPA server (see `local_opa`), started on first need: by
    `use_guardrails` (the audit calls it once it has read the ClusterAIDataPolicies, and reads the
    rest of the cluster while OPA comes up), else by the first evaluation."""

    def __init__(
        self,
        policies: Sequence[Policy],
        opa_binary: Path,
        root: Path,
        pool: ThreadPoolExecutor,
        parsed_from: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self._policies = list(policies)
        # the AIDataPolicy objects `policies` were parsed from (the audit then parses them no more)
        self.parsed_from = parsed_from
        self._opa_binary = opa_binary
        self._root = root
        self._pool = pool
        self._lock = threading.Lock()
        self._ready: Future[Any] | None = None
        self._server: OpaServer | None = None

    def use_guardrails(
        self, documents: Mapping[str, Mapping[str, Any]], guardrails_of: Mapping[str, Sequence[str]]
    ) -> None:
        """Evaluate with these ClusterAIDataPolicies (name -> ClusterPolicy.to_document()) and the
        namespaces each one selects, as the operator renders them; once, before any evaluation."""
        with self._lock:
            if self._ready is not None:
                raise RuntimeError("the audit's OPA is already running: guardrails come before evaluations")
            policies = self._policies
            self._start(
                lambda: render.render_data(
                    policies, guardrails=documents, guardrails_of=guardrails_of, with_detector=True
                )
            )

    def _start(self, make_data: Callable[[], dict[str, Any]]) -> Future[Any]:
        """Render the data, write the bundle and start OPA, all in the background (rendering 5,500
        policies took most of a second: the audit reads the cluster meanwhile)."""
        modules = render.policy_modules()

        def start() -> Any:
            files = write_bundle(Bundle(modules, make_data()), self._root / "bundle")
            server = self._server = OpaServer(
                self._root / "opa", new_token(), bin_dir=self._opa_binary.parent, preload=(files,)
            )
            server.start()
            if server.ca_file is None:
                raise AuditEvaluationError("the audit's OPA server has no CA file")
            return direct_evaluator(server.url, server.token, server.ca_file)

        self._ready = self._pool.submit(start)
        return self._ready

    def __call__(self, reviews: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            policies = self._policies
            ready = self._ready or self._start(lambda: render.render_data(policies, with_detector=True))
        result: list[dict[str, Any]] = ready.result()(reviews)
        return result

    @property
    def policies(self) -> list[Policy]:
        """The valid policies it evaluates with."""
        return list(self._policies)

    def stop(self) -> None:
        if self._ready is not None:
            with contextlib.suppress(Exception):  # a start failure was raised by an evaluation
                self._ready.result()
        if self._server is not None:
            self._server.stop()


@contextlib.contextmanager
def local_opa(policy_objects: Sequence[Mapping[str, Any]], opa_binary: Path) -> Iterator[LocalOpa]:
    """A private OPA server (loopback, TLS, token) holding the policies of the cluster being audited
    and, when the audit gives them (`LocalOpa.use_guardrails`), its ClusterAIDataPolicies, with the
    catalog's detector: the data the operator renders for admission.

    OPA reads the bundle from files at start and comes up in the background (about 0.3 s, mostly
    the process starting): the caller reads the cluster meanwhile, and the first evaluation waits
    for it.
    """
    policies, _errors = parse_policies(policy_objects)  # bad ones: the operator reports them
    with (
        tempfile.TemporaryDirectory(prefix="aidp-audit-") as tmp,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="aidp-audit-opa") as pool,
    ):
        evaluator = LocalOpa(policies, opa_binary, Path(tmp), pool, parsed_from=policy_objects)
        try:
            yield evaluator
        finally:
            evaluator.stop()
