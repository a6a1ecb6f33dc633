"""docs/install.md's values table is the one generated from the chart's schema and defaults."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("values_table", ROOT / "hack" / "values_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_table_matches_the_schema() -> None:
    gen = _generator()
    doc = (ROOT / "docs" / "install.md").read_text()
    assert gen.embed(doc, gen.table()) == doc, "run: .venv/bin/python hack/values_table.py --write"


def test_every_schema_leaf_is_in_the_table() -> None:
    gen = _generator()
    table = gen.table()
    for key in ("egress.backend", "webhook.failurePolicy", "opa.replicaCount", "audit.intervalSeconds"):
        assert f"| `{key}` |" in table, key
