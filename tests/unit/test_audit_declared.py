"""The audit's records state the declarations as admission reads them: the same hostile annotation
values (white space Go and Python disagree on, case mappings they disagree on, leading zeros,
huge numbers, other Unicode digits, values that are not strings) go through the admission Rego
in a real OPA and through the audit, and both must read them alike."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from aidp import check, paths
from aidp.audit import declared
from aidp.audit.engine import Auditor
from aidp.audit.evaluate import local_opa
from aidp.model import CHECKED_KINDS, Policy
from tests.integration import helpers

CONSENT, RETENTION, CATEGORIES = "aidp.io/consent-basis", "aidp.io/retention-days", "aidp.io/data-categories"

HOSTILE: list[Any] = [
    "contract",
    " Contract ",
    "\tCONTRACT\r\n",
    "\x1ccontract",  # an information separator: white space to Python's strip, not to Go's TrimSpace
    "contract\x1f",
    "\x1d\x1e",
    "\xa0contract\u3000",
    "\u2028contract\u2029",
    "\x85contract\u205f",
    "\u200bcontract",  # zero width space: white space to neither
    "\u180econtract",
    "\u0130NTERNAL",  # Python lower-cases it to two code points, Go to "i"
    "ΟΔΟΣ",  # a final sigma: Python's context-dependent mapping, Go's plain one
    "\u01c5",
    "\u212a",  # Kelvin sign
    "\ufb03",
    "STRASSE\u1e9e",
    "",
    "   ",
    "\x85",
    "14",
    " 14 ",
    "\u2028 14\u2029",
    "014",
    "0",
    "000",
    "0" * 5000 + "7",  # longer than the 1024 characters aidp reads
    "0" * 1000 + "7",  # within them: 7 days
    "9" * 400,  # beyond float64
    "1234567890123456",
    "123456789012345",
    "+7",
    "-0",
    "7.0",
    "1e3",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to Python, not to ^[0-9]+$
    "\xb2",
    "\uff17",  # fullwidth 7
    "a, B ,,C",
    ",,",
    " , ",
    "\u0130,\u0131, INTERNAL ",
    "internal,\x1cpublic",
    "internal\u3000,\u3000public",
    7,
    7.5,
    0,
    True,
    None,
    ["internal"],
    {"a": "b"},
]


@pytest.fixture(scope="module")
def opa() -> Path:
    try:
        return check.find_opa()
    except check.OpaError as err:
        pytest.fail(f"{err} (run make testbin)")


def _pod(index: int, annotations: Mapping[str, Any]) -> dict[str, Any]:
    pod = helpers.workload("Pod", f"p{index}", "ns", annotations={})
    pod["metadata"]["annotations"] = dict(annotations)
    return pod


def _review(pod: Mapping[str, Any]) -> dict[str, Any]:
    return check.admission_review(pod, CHECKED_KINDS[0], "uid")


REGO_QUERY = """[r |
  some c in input.cases
  r := {
    "present": [x | x := data.aidp.admission.present("aidp.io/consent-basis") with input as c],
    "consent": [x | x := lower(data.aidp.admission.present("aidp.io/consent-basis")) with input as c],
    "categories": [x | x := data.aidp.admission.declared_categories with input as c],
    "retention": [d |
      raw := data.aidp.admission.readable("aidp.io/retention-days") with input as c
      regex.match(`^[0-9]+$`, raw)
      d := data.aidp.admission.decimal_digits(raw)
    ],
  }
]"""


def rego_reads(opa: Path, tmp: Path, cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the admission Rego reads of each annotation set, evaluated by OPA."""
    inp = tmp / "input.json"
    inp.write_text(json.dumps({"cases": [_review(_pod(i, c)) for i, c in enumerate(cases)]}))
    aidp = paths.policies_dir() / "aidp"
    proc = subprocess.run(
        [str(opa), "eval", "--format", "json", "-d", str(aidp), "-i", str(inp), REGO_QUERY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: list[dict[str, Any]] = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    assert len(result) == len(cases)
    return result


def _one(values: list[Any]) -> Any:
    return values[0] if values else None


@pytest.fixture(scope="module")
def reads(opa: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    cases = [{CONSENT: v, RETENTION: v, CATEGORIES: v} for v in HOSTILE]
    return rego_reads(opa, tmp_path_factory.mktemp("rego"), cases)


@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=[repr(v)[:40] for v in HOSTILE])
def test_the_audit_normalises_each_hostile_value_as_the_rego_does(
    index: int, reads: list[dict[str, Any]]
) -> None:
    value = HOSTILE[index]
    ann = {CONSENT: value, RETENTION: value, CATEGORIES: value}
    rego = reads[index]
    assert declared.present(ann, CONSENT) == _one(rego["present"])
    assert declared.consent_basis(ann) == _one(rego["consent"])
    assert declared.retention_digits(ann) == _one(rego["retention"])
    assert declared.data_categories(ann) == sorted(_one(rego["categories"]))


def test_retention_days_in_the_record_are_the_rego_digits_or_none() -> None:
    assert declared.retention_days({RETENTION: "0" * 1000 + "7"}) == 7
    assert declared.retention_days({RETENTION: "0" * 5000 + "7"}) is None  # longer than aidp reads
    assert declared.retention_days({RETENTION: " 014\u3000"}) == 14
    assert declared.retention_days({RETENTION: "9" * 16}) is None  # admission: more than any limit
    assert declared.retention_days({RETENTION: "\uff17"}) is None
    assert declared.retention_days({RETENTION: 7}) is None


# --- the records of processing ------------------------------------------------------------------

# approves any declaration of a consent basis (not required) and of data categories (any)
LENIENT = helpers.policy(
    "lenient",
    "ns",
    consent={"required": False},
    retention={"maxDays": 3650, "requireZeroDataRetention": False},
    dataCategories={},
)
LENIENT["metadata"]["uid"] = "u-lenient"


@pytest.fixture(scope="module")
def evaluate(opa: Path) -> Iterator[Any]:
    with local_opa([LENIENT], opa) as ev:
        yield ev


def _records_of(evaluate: Any, pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    auditor = Auditor(evaluate, [Policy.from_object(LENIENT)], dt.date(2026, 1, 1))
    auditor.add(pods)
    return {r.name: r.to_dict() for r in auditor.finish().records}


def test_records_state_the_declarations_as_admission_read_them(
    evaluate: Any, opa: Path, tmp_path: Path
) -> None:
    """Each record's consent basis, retention and categories equal the Rego's reading of the same
    annotations; a workload the Rego refuses to read (a category that is not a string) has none."""
    cases = [
        {CONSENT: v, RETENTION: "14", CATEGORIES: f"internal,{v}" if isinstance(v, str) else v}
        for v in HOSTILE
    ]
    pods = [_pod(i, c) for i, c in enumerate(cases)]
    records = _records_of(evaluate, pods)
    rego = rego_reads(opa, tmp_path, cases)
    for i, (case, read) in enumerate(zip(cases, rego, strict=True)):
        record = records.get(f"p{i}")
        if not _one(read["categories"]):
            assert record is None, (case, record)  # no category declared: a violation, no record
            continue
        assert record is not None, case
        assert record["consentBasis"] == _one(read["consent"]), case
        assert record["dataCategories"] == sorted(_one(read["categories"])), case
        assert record["retentionDays"] == 14


def test_a_string_and_a_number_are_not_one_verdict(evaluate: Any) -> None:
    """The verdict memo tells "7" from 7: admission reads the number as no declaration at all."""
    base = {CONSENT: "contract", CATEGORIES: "internal"}
    records = _records_of(evaluate, [_pod(0, {**base, RETENTION: "7"}), _pod(1, {**base, RETENTION: 7})])
    assert set(records) == {"p0"}  # retention-days missing: a violation of the lenient policy too
    assert records["p0"]["retentionDays"] == 7
