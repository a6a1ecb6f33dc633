"""bench/common.py: missed targets are shown with their control from the same rounds."""

from __future__ import annotations

from bench import common


def test_a_missed_target_is_shown_with_its_control() -> None:
    results = {
        "admission_opa_vs_gatekeeper_p99_ratio_c50": 0.99,
        "admission_noop_webhook_vs_gatekeeper_p99_ratio_c50": 0.85,  # the no-op alone is over 0.8
        "admission_vap_vs_gatekeeper_p99_ratio_c50": 0.9,
        "admission_no_admission_vs_gatekeeper_p99_ratio_c50": 0.7,
        "admission_overhead_p99_ratio_c1": 1.2,  # met: not listed
        "admission_overhead_p99_ratio_c1_noop_webhook": 1.4,
    }
    lines = common._missed(results)
    assert lines[1] == "## Missed targets and their controls"
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 2
    assert "0.850 | the control alone is over the target" in rows[0]
    assert "aidp's own cost is +0.200 over the control" in rows[1]


def test_nothing_missed_adds_no_section() -> None:
    assert common._missed({"admission_opa_vs_gatekeeper_p99_ratio_c50": 0.5}) == []
    # a missed target whose control was not measured is not explained
    assert common._missed({"admission_opa_vs_gatekeeper_p99_ratio_c50": 0.99}) == []
