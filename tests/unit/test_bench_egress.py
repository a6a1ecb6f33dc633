"""bench/egress.py's reading of the probe pod's attempts: when the packets followed a change."""

from __future__ import annotations

import pytest
from bench.egress import SETTLED, converged, parse_attempts


def test_the_log_is_read_as_start_and_result() -> None:
    log = "100.10 1\n100.20 0\nnc: noise\n100.3x 1\n\n100.40 1\n"
    assert parse_attempts(log) == [(100.10, True), (100.20, False), (100.40, True)]


def test_the_first_confirmed_attempt_after_the_change_counts() -> None:
    # refused until 10.3; a lone success at 10.2 is not confirmed by the attempt after it
    attempts = [(9.9, True), (10.0, False), (10.1, False), (10.2, True), (10.25, False)]
    attempts += [(10.3 + i / 10, True) for i in range(20)]
    assert converged(attempts, 10.05, True) == pytest.approx(0.25)
    assert converged(attempts, 9.95, False) == pytest.approx(0.05)


def test_undecided_while_earlier_attempts_may_still_answer() -> None:
    # a dropped attempt started at 10.1 reports late (out of order): not yet settled
    attempts = [(10.2, True), (10.3, True), (10.1, False)]
    assert converged(attempts, 10.0, True) is None
    attempts += [(10.2 + SETTLED, True)]
    assert converged(attempts, 10.0, True) == pytest.approx(0.2)


def test_nothing_after_the_change_is_undecided() -> None:
    assert converged([(1.0, True), (1.1, True), (5.0, True)], 6.0, True) is None
    assert converged([], 0.0, False) is None
