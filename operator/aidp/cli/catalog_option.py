"""The provider catalog options of `aidp run`, `render`, `check` and `audit`.

`--provider-catalog FILE`: the file is loaded and validated while the command line is parsed,
before the command runs, and installed as the process's catalog (aidp.catalog.use). A file that
does not validate is refused with exit code 2 and a message naming its line and field; without the
flag (or AIDP_PROVIDER_CATALOG) the catalog shipped in the package is used.

`--provider-catalog-configmap NAMESPACE/NAME[:KEY]` (the commands that talk to a cluster: `run`,
`audit`, `check --kubeconfig`): the catalog in a ConfigMap's key (default `providers.yaml`), read
once through the API with the same parser (aidp.catalog.from_configmap, via
aidp.controller.catalogwatch.read_at_start) and installed likewise. Its syntax and its exclusion
with `--provider-catalog` are checked while the command line is parsed; the read needs the
command's kubeconfig, so the command calls `use_configmap`. A missing, unreadable or malformed
ConfigMap is refused with exit code 2, naming the ConfigMap (and its line and field; for a 403 the
RBAC the caller needs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aidp import catalog

ENVVAR = "AIDP_PROVIDER_CATALOG"
CONFIGMAP_ENVVAR = "AIDP_PROVIDER_CATALOG_CONFIGMAP"
FLAG = "--provider-catalog"
CONFIGMAP_FLAG = "--provider-catalog-configmap"


def _install(value: Path | None) -> Path | None:
    try:
        catalog.use_file(value)
    except catalog.CatalogError as err:
        raise typer.BadParameter(str(err), param_hint=FLAG) from None
    return value


ProviderCatalog = Annotated[
    Path | None,
    typer.Option(
        FLAG,
        envvar=ENVVAR,
        is_eager=True,
        callback=_install,
        help="Provider catalog YAML to use instead of the built-in one (see docs/providers.md).",
    ),
]


def check_configmap_ref(value: str | None, file: Path | None) -> catalog.ConfigMapRef | None:
    """The `--provider-catalog-configmap` value parsed (None without it); BadParameter when it is
    not NAMESPACE/NAME[:KEY] or `--provider-catalog` is given too."""
    if value is None:
        return None
    if file is not None:
        raise typer.BadParameter(
            f"give either {FLAG} ({file}) or {CONFIGMAP_FLAG} ({value}), not both", param_hint=CONFIGMAP_FLAG
        )
    try:
        return catalog.ConfigMapRef.parse(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=CONFIGMAP_FLAG) from None


def _check_configmap(ctx: typer.Context, value: str | None) -> str | None:
    # --provider-catalog is eager: parsed (and installed) before this option
    check_configmap_ref(value, ctx.params.get("provider_catalog"))
    return value


ProviderCatalogConfigMap = Annotated[
    str | None,
    typer.Option(
        CONFIGMAP_FLAG,
        envvar=CONFIGMAP_ENVVAR,
        metavar="NAMESPACE/NAME[:KEY]",
        callback=_check_configmap,
        help=(
            "Read the provider catalog from this ConfigMap's key (default key: providers.yaml) "
            "through the API instead of the built-in one (needs get on that ConfigMap; not with "
            "--provider-catalog). `aidp run` also applies its changes while running; a missing or "
            "malformed one exits 2 (docs/providers.md)."
        ),
    ),
]


def use_configmap(value: str | None, kubeconfig: Path | None) -> object:
    """With `--provider-catalog-configmap`: read the ConfigMap's catalog once through the API (the
    cluster of `kubeconfig`; None: $KUBECONFIG, ~/.kube/config or the service account), install it
    and return the ConfigMap's data; None without the option. BadParameter (exit code 2) naming the
    ConfigMap, and its line and field, when it cannot be used."""
    ref = check_configmap_ref(value, None)
    if ref is None:
        return None
    from aidp import kube
    from aidp.controller import catalogwatch

    try:
        client = kube.client(kubeconfig)
    except Exception as err:  # no kubeconfig, no service account
        raise typer.BadParameter(
            f"provider catalog {ref.source}: no cluster to read it from: {err}", param_hint=CONFIGMAP_FLAG
        ) from None
    try:
        cat, data = catalogwatch.read_at_start(client, ref)
    except catalogwatch.StartError as err:
        raise typer.BadParameter(str(err), param_hint=CONFIGMAP_FLAG) from None
    catalog.use(cat)
    return data


def describe(cat: catalog.Catalog | None = None) -> str:
    """Which catalog is in use, for a command's stderr: `the built-in provider catalog (8
    providers)`, `provider catalog FILE (9 providers)` or `provider catalog ConfigMap NS/NAME key
    KEY (9 providers)`."""
    cat = cat or catalog.current()
    n = len(cat.names)
    what = "the built-in provider catalog" if cat is catalog.builtin() else f"provider catalog {cat.source}"
    return f"{what} ({n} provider{'s' if n != 1 else ''})"
