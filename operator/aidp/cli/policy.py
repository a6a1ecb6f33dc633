"""`aidp render` and `aidp check` (offline commands)."""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from aidp import check as checking
from aidp import render as rendering
from aidp.egress.model import AddressBook, EgressContext, EgressSettings
from aidp.egress.resolver import load_overrides
from aidp.model import PolicyError

EXIT_DENIED = 1
EXIT_BAD_INPUT = 2

Filenames = Annotated[
    list[str],
    typer.Option(
        "--filename",
        "-f",
        help="Manifest file, or directory of .yaml/.yml/.json files; `-` reads stdin. Repeatable.",
    ),
]


class RenderFormat(enum.StrEnum):
    yaml = "yaml"
    json = "json"


class CheckFormat(enum.StrEnum):
    text = "text"
    json = "json"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the Rego sources) as literal blocks."""

    def analyze_scalar(self, scalar: str) -> Any:
        # PyYAML refuses block style for strings with tabs (which `opa fmt` indents with), though
        # YAML allows tabs in block scalar content; analyse as if they were spaces.
        if "\n" not in scalar:
            return super().analyze_scalar(scalar)
        analysis = super().analyze_scalar(scalar.replace("\t", " "))
        analysis.scalar = scalar
        return analysis


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def render(
    filename: Filenames,
    backend: Annotated[
        str, typer.Option("--backend", help="Egress backend whose objects to render.")
    ] = rendering.DEFAULT_BACKEND,
    output: Annotated[
        RenderFormat, typer.Option("--output", "-o", help="Output format.")
    ] = RenderFormat.yaml,
    addresses_file: Annotated[
        Path | None,
        typer.Option(
            "--addresses-file", help="YAML of provider addresses (as `aidp run --egress-addresses-file`)."
        ),
    ] = None,
    cilium_mode: Annotated[str, typer.Option(help="cilium backend: strict or preserve.")] = "strict",
    cilium_sni: Annotated[bool, typer.Option(help="cilium backend: match TLS SNI.")] = True,
) -> None:
    """Print every object generated for the AIDataPolicies in the files.

    OPA modules, the OPA data document and egress objects. No cluster and no DNS needed:
    IP-based backends take the provider addresses from --addresses-file. Deterministic.
    """
    try:
        manifests = rendering.load_manifests(filename)
        policies = rendering.policies_from_manifests(manifests)
        static, extra = load_overrides(addresses_file)
        if addresses_file is not None and not addresses_file.is_file():
            raise OSError(f"{addresses_file}: no such file")
        book = AddressBook(
            {h: tuple(sorted(set(static.get(h, ())) | set(extra.get(h, ())))) for h in {*static, *extra}}
        )
        ctx = EgressContext(
            book,
            dt.datetime.now(dt.UTC).date(),
            EgressSettings(cilium_mode=cilium_mode, cilium_sni=cilium_sni),
        )
        objects = rendering.render_objects(policies, backend=backend, egress=ctx)
    except (rendering.ManifestError, PolicyError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    if output is RenderFormat.json:
        typer.echo(json.dumps(objects, indent=2, ensure_ascii=False))
    else:
        typer.echo(dump_yaml(objects), nl=False)


def check(
    filename: Filenames,
    output: Annotated[CheckFormat, typer.Option("--output", "-o", help="Output format.")] = CheckFormat.text,
) -> None:
    """Offline admission: evaluate the workloads in the files against the AIDataPolicies in the files.

    Uses the same Rego as the admission webhook. Exit 0 when all are admitted, 1 when any is denied,
    2 on bad input.
    """
    try:
        results = checking.check_manifests(rendering.load_manifests(filename))
    except (rendering.ManifestError, checking.CheckError) as err:
        raise _fail(str(err)) from None
    if output is CheckFormat.json:
        typer.echo(checking.format_json(results), nl=False)
    else:
        typer.echo(checking.format_text(results), nl=False)
    if not all(r.allowed for r in results):
        raise typer.Exit(EXIT_DENIED)


def register(app: typer.Typer) -> None:
    """Add the offline policy commands to the `aidp` application."""
    app.command("render")(render)
    app.command("check")(check)
