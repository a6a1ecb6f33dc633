"""`--provider-catalog-configmap NAMESPACE/NAME[:KEY]` on the commands that talk to a cluster
(`run`, `audit`, `check --kubeconfig`): one option definition, its syntax and its exclusion with
`--provider-catalog` checked while the command line is parsed (exit code 2 before any work), what
a 403 and a 404 say, and how stderr names the catalog in use. Reading a real ConfigMap:
tests/integration/test_catalog_configmap_cli.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from typer.testing import CliRunner

from aidp import catalog
from aidp.cli import catalog_option
from aidp.cli.main import app
from aidp.controller import catalogwatch

BUILTIN_TEXT = catalog.BUILTIN_FILE.read_text(encoding="utf-8")
REF = catalog.ConfigMapRef("aidp-system", "providers")
COMMANDS = ("run", "audit", "check")
runner = CliRunner()


@pytest.fixture(autouse=True)
def builtin_catalog() -> Iterator[None]:
    catalog.use(None)
    yield
    catalog.use(None)


def _plain(output: str) -> str:
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())


def _option(command: str, flag: str) -> Any:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    (opt,) = [p for p in cmd.params if flag in p.opts]
    return opt


def _invoke(command: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    argv = [command, *args]
    if command == "check":
        policy = tmp_path / "p.yaml"
        policy.write_text(yaml.safe_dump({"kind": "x"}))
        argv += ["-f", str(policy), "--kubeconfig", str(tmp_path / "kc")]
    return runner.invoke(app, argv, env={"COLUMNS": "400", **(env or {})})


def test_the_three_commands_share_one_option_definition() -> None:
    opts = [_option(c, catalog_option.CONFIGMAP_FLAG) for c in COMMANDS]
    assert {(o.envvar, o.metavar, o.help) for o in opts} == {
        (catalog_option.CONFIGMAP_ENVVAR, "NAMESPACE/NAME[:KEY]", opts[0].help)
    }
    assert "needs get on that ConfigMap" in (opts[0].help or "")
    # render works on files alone: no cluster to read a ConfigMap from
    render = typer.main.get_command(app).commands["render"]  # type: ignore[attr-defined]
    assert all(catalog_option.CONFIGMAP_FLAG not in p.opts for p in render.params)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("bad", ["providers", "NS/cm", "ns/cm:", "ns/cm:a b"])
def test_a_malformed_reference_exits_2_before_the_command_runs(
    command: str, bad: str, tmp_path: Path
) -> None:
    result = _invoke(command, tmp_path, "--provider-catalog-configmap", bad)
    assert result.exit_code == 2, result.output
    out = _plain(result.output)
    assert "--provider-catalog-configmap" in out and repr(bad) in out, out
    assert "NAMESPACE/NAME" in out or "is not a ConfigMap key" in out, out


@pytest.mark.parametrize("command", COMMANDS)
def test_the_file_and_the_configmap_are_mutually_exclusive(command: str, tmp_path: Path) -> None:
    cat = tmp_path / "providers.yaml"
    cat.write_text(BUILTIN_TEXT)
    both = ("--provider-catalog-configmap", "aidp-system/providers", "--provider-catalog", str(cat))
    for args, env in ((both, None), (both[:2], {catalog_option.ENVVAR: str(cat)})):
        result = _invoke(command, tmp_path, *args, env=env)
        assert result.exit_code == 2, result.output
        out = _plain(result.output)
        assert (
            f"give either --provider-catalog ({cat}) or --provider-catalog-configmap "
            "(aidp-system/providers), not both" in out
        ), out


def test_check_reads_a_configmap_only_from_the_cluster_of_kubeconfig(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump({"kind": "x"}))
    result = runner.invoke(
        app, ["check", "-f", str(policy), "--provider-catalog-configmap", "ns/cm"], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert "--provider-catalog-configmap: needs --kubeconfig" in _plain(result.output)


@pytest.mark.parametrize("command", ["audit", "check"])
def test_an_unreachable_cluster_exits_2_naming_the_configmap(command: str, tmp_path: Path) -> None:
    result = _invoke(
        command,
        tmp_path,
        "--provider-catalog-configmap",
        "ns/cm",
        *(["--kubeconfig", str(tmp_path / "kc")] if command == "audit" else []),
    )
    assert result.exit_code == 2, result.output
    assert "provider catalog ConfigMap ns/cm key providers.yaml:" in _plain(result.output)


def _api_error(code: int, message: str) -> ApiError:
    return ApiError(status=Status(code=code, message=message))


def test_a_404_says_how_to_create_the_configmap() -> None:
    text = catalogwatch.unreadable(_api_error(404, 'configmaps "providers" not found'), REF)
    assert text == (
        "the ConfigMap does not exist (create it: kubectl -n aidp-system create configmap providers "
        "--from-file=providers.yaml=FILE)"
    )


def test_a_403_names_the_rbac_the_caller_needs() -> None:
    denied = 'configmaps "providers" is forbidden: User "alice" cannot get resource "configmaps"'
    text = catalogwatch.unreadable(_api_error(403, denied), catalog.ConfigMapRef("team", "cat", "p.yaml"))
    assert text.startswith(f"the ConfigMap cannot be read ({denied}): the identity in use needs get on ")
    assert (
        'namespace team (a Role with apiGroups [""], resources [configmaps], resourceNames [cat], verbs [get]'
        in (text)
    )


def test_another_api_error_is_quoted() -> None:
    text = catalogwatch.unreadable(_api_error(500, "etcd is down"), REF)
    assert text == "the ConfigMap cannot be read (etcd is down)"


def test_stderr_names_the_catalog_in_use(tmp_path: Path) -> None:
    n = len(catalog.builtin().names)
    assert catalog_option.describe() == f"the built-in provider catalog ({n} providers)"
    path = tmp_path / "providers.yaml"
    path.write_text(BUILTIN_TEXT)
    catalog.use_file(path)
    assert catalog_option.describe() == f"provider catalog {path} ({n} providers)"
    cat = catalog.from_configmap({"providers.yaml": BUILTIN_TEXT}, REF)
    assert catalog_option.describe(cat) == (
        f"provider catalog ConfigMap aidp-system/providers key providers.yaml ({n} providers)"
    )
