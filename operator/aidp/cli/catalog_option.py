"""`--provider-catalog FILE`: the provider catalog of `aidp run`, `render`, `check` and `audit`.

The file is loaded and validated while the command line is parsed, before the command runs, and
installed as the process's catalog (aidp.catalog.use). A file that does not validate is refused
with exit code 2 and a message naming its line and field; without the flag (or
AIDP_PROVIDER_CATALOG) the catalog shipped in the package is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aidp import catalog

ENVVAR = "AIDP_PROVIDER_CATALOG"


def _install(value: Path | None) -> Path | None:
    try:
        catalog.use_file(value)
    except catalog.CatalogError as err:
        raise typer.BadParameter(str(err), param_hint="--provider-catalog") from None
    return value


ProviderCatalog = Annotated[
    Path | None,
    typer.Option(
        "--provider-catalog",
        envvar=ENVVAR,
        is_eager=True,
        callback=_install,
        help="Provider catalog YAML to use instead of the built-in one (see docs/providers.md).",
    ),
]
