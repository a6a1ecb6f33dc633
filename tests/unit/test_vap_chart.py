"""The chart's admission.engine value (docs/admission-engines.md): the operator's flag, its RBAC for
the ValidatingAdmissionPolicy objects, and no webhook configuration with `vap`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_chart import container, one, render


def _rules(objs: list[dict[str, Any]], resource: str) -> set[str]:
    rules = one(objs, "ClusterRole", "aidp-operator")["rules"]
    return {v for r in rules if resource in r["resources"] for v in r["verbs"]}


@pytest.mark.parametrize("engine", ["opa", "vap", "both"])
def test_admission_engine(engine: str) -> None:
    objs = render((f"admission.engine={engine}",))
    args = container(objs, "aidp-operator", "operator")["args"]
    assert args[args.index("--admission-engine") + 1] == engine
    webhooks = [o for o in objs if o["kind"] == "ValidatingWebhookConfiguration"]
    assert len(webhooks) == (0 if engine == "vap" else 1)
    for resource in ("validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        verbs = _rules(objs, resource)
        if engine == "opa":
            assert verbs == {"list", "watch"}
        else:
            assert verbs == {"list", "watch", "get", "create", "patch", "update", "delete"}
    assert ("delete" in _rules(objs, "validatingwebhookconfigurations")) == (engine == "vap")


def test_the_default_engine_is_opa() -> None:
    args = container(render(), "aidp-operator", "operator")["args"]
    assert args[args.index("--admission-engine") + 1] == "opa"
    with pytest.raises(AssertionError):
        render(("admission.engine=gatekeeper",))
