"""bench/common.py: missed targets are shown with their control from the same rounds, or the
reason measured apart; bench/scale.py reads the operator's sync log."""

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


def test_a_missed_target_without_a_control_gives_its_measured_reason() -> None:
    lines = common._missed({"operator_rss_mb_10000_policies": 280.0, "operator_rss_mb_1000_policies": 110.0})
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 1  # 1,000 is met
    assert rows[0].startswith("| `operator_rss_mb_10000_policies` | 280.000 | none | measured where it is")
    assert "operations.md#scale" in rows[0]


def test_every_reason_and_control_names_a_target() -> None:
    assert set(common.REASONS) <= set(common.TARGETS)
    assert set(common.CONTROLS) <= set(common.TARGETS)


def test_a_control_that_meets_the_target_comes_with_the_reason() -> None:
    lines = common._missed(
        {
            "admission_vap_overhead_p99_ratio_c50": 1.3,
            "admission_gatekeeper_vap_overhead_p99_ratio_c50": 1.05,
        }
    )
    rows = [line for line in lines if line.startswith("| `")]
    assert "aidp's own cost is +0.250 over the control; the CEL runs on kube-apiserver's CPU" in rows[0]


SYNC = (
    "2026-12-02 17:00:00,000 INFO aidp.reconciler: synced 10001 policies ({kind}, 1 namespaces changed), "
    "revision 0a1b, 2/2 OPA replicas in {total}s (read and render {rr}s, OPA 0.015s, durable copy "
    "0.020s, labels 0.000s, pods 0.060s, egress 0.040s, bounds 0.000s, statuses 0.060s, guardrails 0.000s)"
)


def test_the_sync_log_gives_each_step_of_incremental_syncs() -> None:
    from bench.scale import step_medians, sync_steps

    log = "\n".join(
        [
            SYNC.format(kind="full", total="9.000", rr="5.000"),
            "an unrelated line",
            SYNC.format(kind="incremental", total="0.210", rr="0.020"),
            SYNC.format(kind="incremental", total="0.300", rr="0.090"),
            SYNC.format(kind="incremental", total="0.250", rr="0.040"),
        ]
    )
    syncs = sync_steps(log)
    assert [s["read and render"] for s in syncs] == [0.02, 0.09, 0.04]
    assert set(syncs[0]) == {
        "total",
        "read and render",
        "OPA",
        "durable copy",
        "labels",
        "pods",
        "egress",
        "bounds",
        "statuses",
        "guardrails",
    }
    medians = step_medians(syncs)
    assert medians["read and render"] == 0.04 and medians["total"] == 0.25 and medians["OPA"] == 0.015
    assert step_medians([]) == {}
