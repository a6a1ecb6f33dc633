"""The provider parts of the AIDataPolicy CRD, generated from the provider catalog.

The CRDs stay static files (crds/ and their copies in charts/aidp/crds/); the blocks between
`# BEGIN provider-catalog <part>` and `# END provider-catalog <part>` are this module's output:
the `spec.provider` enum, the `spec.dataResidency` enum (every region of every provider) and the
`spec` CEL rules that tie a region to its provider and require endpoints of a provider without a
fixed one (the parser, aidp.policy_parser, makes the same checks); in the ClusterAIDataPolicy
CRD, the enums of spec.providers and spec.dataResidency.

    python -m aidp.catalog.crd [--provider-catalog FILE] [--check]   (hack/gen-providers)

rewrites the CRD files and docs/providers.md (aidp.catalog.docs) from the catalog; `--check`
only says whether they are up to date. A
catalog override that adds a provider needs CRDs regenerated this way (the API server refuses
names its enum does not list).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from aidp import catalog as catalog_mod
from aidp.catalog import Catalog, docs

CRD_NAME: Final = "aidp.io_aidatapolicies.yaml"
CLUSTER_CRD_NAME: Final = "aidp.io_clusteraidatapolicies.yaml"
# a generated block: its BEGIN line (which carries a suffix) to its END line, at one indentation
_BLOCK_RE: Final = re.compile(
    r"^(?P<indent>[ ]*)# BEGIN provider-catalog (?P<part>[a-z-]+)[^\n]*\n.*?"
    r"^(?P=indent)# END provider-catalog (?P=part)\n",
    re.MULTILINE | re.DOTALL,
)
_MARK: Final = "generated from operator/aidp/catalog/providers.yaml by hack/gen-providers"


def all_regions(cat: Catalog) -> list[str]:
    """Every residency region of the catalog, in catalog order, without duplicates."""
    return list(dict.fromkeys(r for p in cat for r in p.regions))


def _quoted(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


# Stable messages (tests key on them); the parser's messages name the provider and its regions.
RESIDENCY_MESSAGE: Final = (
    "dataResidency must be one of the provider's regions (docs/providers.md lists them)"
)
ENDPOINTS_MESSAGE: Final = (
    "the provider has no fixed endpoint: list its host in endpoints, or set dataResidency where the "
    "provider has regions"
)


def cel_rules(cat: Catalog) -> list[tuple[str, str]]:
    """(rule, message) for `spec`: a region belongs to the provider named; a provider without a fixed
    endpoint gets one from dataResidency (where it has regions) or from endpoints."""
    clauses = [
        f"(self.provider == '{p.name}' && self.dataResidency in {_quoted(p.regions)})"
        for p in cat
        if p.regions
    ]
    out = [(" ||\n".join(["!has(self.dataResidency)", *clauses]), RESIDENCY_MESSAGE)]
    has_endpoints = "(has(self.endpoints) && size(self.endpoints) > 0)"
    needs = [p for p in cat if p.needs_policy_endpoints]
    only_endpoints = [p.name for p in needs if not p.regions]
    either = [p.name for p in needs if p.regions]
    terms = []
    if only_endpoints:
        terms.append(f"(!(self.provider in {_quoted(only_endpoints)}) || {has_endpoints})")
    if either:
        terms.append(f"(!(self.provider in {_quoted(either)}) || has(self.dataResidency) || {has_endpoints})")
    if terms:
        out.append((" &&\n".join(terms), ENDPOINTS_MESSAGE))
    return out


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line + "\n" if line else "\n" for line in text.split("\n"))


def block(part: str, cat: Catalog, indent: int) -> str:
    """The YAML of one generated part, at `indent` spaces, markers included."""
    if part == "provider-enum":
        body = "enum:\n" + "".join(f"  - {name}\n" for name in cat.names)
    elif part == "residency-enum":
        body = "enum:\n" + "".join(f"  - {region}\n" for region in all_regions(cat))
    elif part == "spec-rules":
        body = "x-kubernetes-validations:\n"
        for rule, message in cel_rules(cat):
            body += "  - rule: >-\n" + _indent(rule, 6) + "    message: >-\n" + _indent(message, 6)
    else:
        raise ValueError(f"unknown generated part {part!r}")
    text = f"# BEGIN provider-catalog {part}: {_MARK}\n" + body + f"# END provider-catalog {part}\n"
    return _indent(text.rstrip("\n"), indent)


# the generated blocks each CRD must have
REQUIRED_PARTS: Final = {
    CRD_NAME: ("provider-enum", "residency-enum", "spec-rules"),
    CLUSTER_CRD_NAME: ("provider-enum", "residency-enum"),
}


def regenerate(text: str, cat: Catalog, required: Sequence[str] = REQUIRED_PARTS[CRD_NAME]) -> str:
    """The CRD text with every generated block rewritten from `cat`; ValueError when a block of
    `required` is missing."""
    parts: list[str] = []

    def replace(m: re.Match[str]) -> str:
        parts.append(m.group("part"))
        return block(m.group("part"), cat, len(m.group("indent")))

    result = _BLOCK_RE.sub(replace, text)
    missing = set(required) - set(parts)
    if missing:
        raise ValueError(f"the CRD has no generated block for: {', '.join(sorted(missing))}")
    return result


def for_current_catalog(text: str) -> str:
    """A CRD's text as the current catalog would generate it (unchanged for a CRD without generated
    blocks): what offline validation (`aidp check`) must use when --provider-catalog overrides the
    catalog, since the packaged CRD lists the built-in providers only."""
    if "# BEGIN provider-catalog " not in text:
        return text
    return regenerate(text, catalog_mod.current(), required=())


def crd_files(root: Path) -> list[Path]:
    """Every CRD file with generated blocks: crds/ and the chart's copies."""
    return [
        root / base / name
        for name in (CRD_NAME, CLUSTER_CRD_NAME)
        for base in (Path("crds"), Path("charts") / "aidp" / "crds")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gen-providers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider-catalog", type=Path, help="catalog file (default: the built-in one)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout (default: .)")
    parser.add_argument("--check", action="store_true", help="only check that the CRDs are up to date")
    args = parser.parse_args(argv)
    try:
        cat = catalog_mod.load(args.provider_catalog) if args.provider_catalog else catalog_mod.builtin()
    except catalog_mod.CatalogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stale: list[Path] = []
    outputs = [
        (path, regenerate(path.read_text(encoding="utf-8"), cat, REQUIRED_PARTS[path.name]))
        for path in crd_files(args.root)
    ]
    outputs.append((args.root / "docs" / "providers.md", docs.markdown(cat)))
    for path, new in outputs:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date with the provider catalog: {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    for path in stale:
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
