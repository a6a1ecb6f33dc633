"""Read `opa test --coverage --format=json` on stdin; print per-file coverage; fail below the bar."""

from __future__ import annotations

import json
import sys

MIN_COVERAGE = 90.0


def main() -> int:
    report = json.load(sys.stdin)
    failed = False
    for name, info in sorted(report.get("files", {}).items()):
        if name.endswith("_test.rego"):
            continue
        cov = float(info.get("coverage", 0.0))
        mark = "ok " if cov >= MIN_COVERAGE else "LOW"
        failed |= cov < MIN_COVERAGE
        print(f"  {mark} {cov:6.1f}%  {name}")
    total = float(report.get("coverage", 0.0))
    print(f"opa test: coverage {total:.1f}% (minimum {MIN_COVERAGE:.0f}% per file)")
    return 1 if failed or total < MIN_COVERAGE else 0


if __name__ == "__main__":
    sys.exit(main())
