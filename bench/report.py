"""`make bench`: run every bench/*/run (or those named), then report each target (bench,
figure, value, target, met or missed) in one table; exit 1 if any target was missed or any
bench ended without reporting its targets (it failed), else 0."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import RESULTS

BENCH = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    runs = sorted(BENCH.glob("*/run")) if not names else [BENCH / name / "run" for name in names]
    for run in runs:
        if not run.is_file():
            print(f"bench: no benchmark {run.parent.name!r} (bench/*/run)", file=sys.stderr)
            return 2
    rows: list[tuple[str, str, str, str, str]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="benchbed-bench-") as work:
        for run in runs:
            name = run.parent.name
            results = Path(work) / f"{name}.jsonl"
            print(f"== bench/{name}", flush=True)
            code = subprocess.run([str(run)], env={**os.environ, RESULTS: str(results)}).returncode
            reported = [json.loads(line) for line in results.read_text().splitlines()] \
                if results.exists() else []
            for target in reported:
                sign = "<=" if target["at_most"] else ">="
                rows.append((name, target["name"], f"{target['value']:.2f}{target['unit']}",
                             f"{sign} {target['limit']:g}{target['unit']}",
                             "pass" if target["met"] else "FAIL"))
            if not reported:
                rows.append((name, "(no result)", "-", "-", f"FAIL (exit {code})"))
            failed = failed or code != 0 or not reported \
                or not all(target["met"] for target in reported)
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    print("\n== make bench: each target against its baseline, measured in the same run")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[4])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
