"""One CLI convention: -o/--output is the format everywhere, --output-file the destination (with the
old spellings of `aidp audit` kept, deprecated, for one release); required flags marked; --version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from aidp import __version__
from aidp.cli import audit_cmd
from aidp.cli.main import app


def command(name: str) -> Any:
    """The click command of `aidp <name>` (typer may bring its own click: no isinstance here)."""
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def option(cmd: Any, flag: str) -> Any:
    found = [p for p in cmd.params if flag in getattr(p, "opts", ())]
    assert found, f"{cmd.name} has no {flag}"
    return found[0]


def test_version_option() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{__version__}\n"
    assert CliRunner().invoke(app, ["version"]).stdout == f"{__version__}\n"


def test_output_is_the_format_everywhere() -> None:
    for name in ("check", "render", "audit"):
        out = option(command(name), "--output")
        assert "-o" in out.opts, name
    assert "--output-file" in option(command("audit"), "--output-file").opts
    # the old spelling is still accepted, but no longer advertised
    assert option(command("audit"), "--output-format").hidden


def test_run_marks_the_opa_token_required(tmp_path: Path) -> None:
    token = option(command("run"), "--opa-token-file")
    assert token.required
    assert token.envvar == "AIDP_OPA_TOKEN_FILE"
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"}).stdout
    line = next(line for line in help_text.splitlines() if "--opa-token-file" in line)
    assert "[required]" in line
    missing = CliRunner().invoke(
        app, ["run", "--kubeconfig", str(tmp_path / "none")], env={"AIDP_OPA_TOKEN_FILE": None}
    )
    assert missing.exit_code == 2
    assert "Missing option '--opa-token-file'" in missing.stderr


@pytest.mark.parametrize(
    ("outputs", "output_format", "output_file", "expected"),
    [
        (None, None, None, ("json", None, 0)),
        (["markdown"], None, None, ("markdown", None, 0)),
        (["html"], None, Path("r.html"), ("html", "r.html", 0)),
        # the old meanings, each with a deprecation warning
        (["report.html"], None, None, ("json", "report.html", 1)),
        (["out/report"], audit_cmd.Format.csv, None, ("csv", "out/report", 2)),
        (["html", "report.html"], None, None, ("html", "report.html", 1)),  # old: -o html --output FILE
        (None, audit_cmd.Format.markdown, None, ("markdown", None, 1)),
    ],
)
def test_audit_output_options(
    outputs: list[str] | None,
    output_format: audit_cmd.Format | None,
    output_file: Path | None,
    expected: tuple[str, str | None, int],
) -> None:
    fmt, path, warnings = audit_cmd.resolve_output(outputs, output_format, output_file)
    assert (fmt.value, str(path) if path else None, len(warnings)) == expected
    for warning in warnings:
        assert "deprecated" in warning


@pytest.mark.parametrize(
    ("outputs", "output_format", "output_file", "message"),
    [
        (
            ["jsn"],
            None,
            None,
            "'jsn' is not a format: json, markdown, html, csv, pdf, records-csv; did you mean json?",
        ),
        (["json", "csv"], None, None, "more than one format: json, csv"),
        (["html"], audit_cmd.Format.csv, None, "more than one format: html, csv"),
        (["a.html"], None, Path("b.html"), "more than one output file: a.html, b.html"),
    ],
)
def test_audit_output_conflicts(
    outputs: list[str], output_format: audit_cmd.Format | None, output_file: Path | None, message: str
) -> None:
    with pytest.raises(typer.BadParameter) as info:
        audit_cmd.resolve_output(outputs, output_format, output_file)
    assert message in str(info.value)


def audit(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(app, ["audit", *args], **kwargs)


def test_audit_output_file_name_still_works_with_a_deprecation_warning(tmp_path: Path) -> None:
    missing = tmp_path / "no-kubeconfig"
    result = audit(["--kubeconfig", str(missing), "--output", str(tmp_path / "report.html")])
    assert result.stderr.splitlines()[0] == (
        f"aidp audit: warning: --output {tmp_path / 'report.html'}: a file name for --output is deprecated "
        f"and will be refused in the next release; use --output-file {tmp_path / 'report.html'} "
        "(-o/--output is the format: json, markdown, html, csv, pdf, records-csv)"
    )
    assert result.exit_code == 2  # then the (missing) cluster
    old = audit(["--kubeconfig", str(missing), "--output-format", "html"])
    assert (
        old.stderr.splitlines()[0]
        == "aidp audit: warning: --output-format is deprecated; use -o/--output html"
    )
    bad = audit(["--kubeconfig", str(missing), "-o", "htm"])
    assert bad.exit_code == 2
    assert "did you mean html?" in bad.stderr
    new = audit(["--kubeconfig", str(missing), "-o", "html", "--output-file", str(tmp_path / "r.html")])
    assert "warning" not in new.stderr
