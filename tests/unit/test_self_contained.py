"""The repository is self-contained: a clone with nothing beside it can run `make run` and `make test`.

- every upstream CRD the tests load is pinned in tests/upstream-crds, byte-identical to the upstream
  blob that SOURCES.md names;
- no test, script, make target or doc refers to a path outside the checkout (`../something`, an
  absolute path of this machine);
- the files pyproject.toml and the Makefile declare exist (LICENSE, constraints.txt).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "upstream-crds"

UPSTREAM_CRDS = {
    "openreports-reports.yaml",
    "openreports-clusterreports.yaml",
    "wgpolicyk8s-policyreports.yaml",
    "cilium-ciliumnetworkpolicies.yaml",
    "policy-api-clusternetworkpolicies.yaml",
    "policy-api-adminnetworkpolicies.yaml",
}

# where a path escaping the checkout would be read: code, scripts, make, CI, chart, docs
SCANNED_SUFFIXES = {".py", ".sh", ".toml", ".yaml", ".yml", ".tpl", ".md", ".txt", ".j2", ".json", ""}
# a relative path that starts with `..` (a link from docs/ to ../README.md stays inside), and
# absolute paths of a developer's machine
RELATIVE_UP = re.compile(r"(?<![\w./:-])((?:\.\./)+[\w.-]+)")
ABSOLUTE_HOME = re.compile(r"(?<![\w:])/(?:work|root|home/\w+)/")


def escapes(line: str, where: Path) -> bool:
    """True when `line` (of the file `where`) names a path outside the checkout."""
    if ABSOLUTE_HOME.search(line.split("://", 1)[0]):
        return True
    for match in RELATIVE_UP.finditer(line):
        if "://" in line[: match.start()]:
            continue  # part of a URL
        # a document's links are relative to its folder; scripts and code run from the checkout
        base = where.parent if where.suffix == ".md" else ROOT
        target = (base / match.group(1)).resolve()
        if target != ROOT and ROOT not in target.parents:
            return True
    return False


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ROOT / line for line in out.splitlines() if line]


def test_upstream_crds_are_pinned_with_their_blob_hashes() -> None:
    sources = (UPSTREAM / "SOURCES.md").read_text()
    assert {p.name for p in UPSTREAM.glob("*.yaml")} == UPSTREAM_CRDS
    for name in sorted(UPSTREAM_CRDS):
        row = next((line for line in sources.splitlines() if line.startswith(f"| {name} |")), None)
        assert row is not None, f"{name} has no row in tests/upstream-crds/SOURCES.md"
        blob = git_blob((UPSTREAM / name).read_bytes())
        assert blob in row, f"{name}: blob {blob} differs from SOURCES.md: {row}"
        assert "Apache-2.0" in row


def test_nothing_reads_outside_the_checkout() -> None:
    offenders = []
    for path in tracked_files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"tests"} and rel.parts[1:2] == ("upstream-crds",):
            continue  # upstream bytes, not ours
        if rel == Path(__file__).relative_to(ROOT) or path.suffix not in SCANNED_SUFFIXES:
            continue
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if escapes(line, path):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "paths outside the checkout:\n" + "\n".join(offenders)


UP = ".." + "/"


@pytest.mark.parametrize(
    ("where", "line", "bad"),
    [
        # paths beside the checkout, spelled through UP so this file names none itself
        ("tests/conftest.py", f'SHARED = ROOT / "{UP}beside/crds"', True),
        ("hack/kind-e2e.sh", f"kubectl apply -f {UP}beside/crds/openreports-reports.yaml", True),
        ("docs/x.md", f"see {UP}{UP}beside/CONTRACT.md", True),
        ("docs/x.md", "see /work/beside/CONTRACT.md", True),
        ("Makefile", "cd ../sibling && make", True),
        ("docs/x.md", "[README](../README.md#quickstart)", False),
        ("hack/x.sh", "kubectl apply -f tests/upstream-crds/openreports-reports.yaml", False),
        ("docs/x.md", "https://example.org/a/../b", False),
        ("tests/x.py", "from ..waiting import wait_for", False),
    ],
)
def test_the_escape_check_sees_what_it_must(where: str, line: str, bad: bool) -> None:
    assert escapes(line, ROOT / where) == bad


def test_declared_project_files_exist() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in pyproject
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0" in license_text
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    pinned = {line.split("==")[0].lower() for line in constraints if "==" in line}
    for dependency in ("kopf", "lightkube", "msgspec", "pytest", "mypy", "ruff"):
        assert dependency in pinned, f"constraints.txt does not pin {dependency}"
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
