"""Output: rich tables on a terminal, plain aligned text when piped, JSON on request."""

import json
import sys
from collections.abc import Sequence
from typing import Any


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(*columns, title=title)
        for row in rows:
            rich_table.add_row(*(str(cell) for cell in row))
        Console().print(rich_table)
        return
    cells = [[str(c) for c in columns]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in cells]
    if title:
        lines.insert(0, title)
    sys.stdout.write("\n".join(lines) + "\n")


def text(message: str) -> None:
    sys.stdout.write(message + ("" if message.endswith("\n") else "\n"))


def note(message: str) -> None:
    """Progress and hints go to stderr so that stdout stays parseable."""
    sys.stderr.write(message + "\n")


def timeline(details: dict[str, Any], every_step: bool) -> None:
    """The timeline of `show`: one line per lane (server or node), or every step."""
    if not details["timeline"]:
        return
    if every_step:
        table(["LANE", "STEP", "DETAIL", "OUTCOME", "AT", "SECONDS"],
              [(t["lane"], "  " * t["depth"] + t["step"], t["detail"] or "", t["outcome"],
                f"{t['start']:.2f}", "" if t["seconds"] is None else f"{t['seconds']:.2f}")
               for t in details["timeline"]], title="timeline")
        return
    table(["LANE", "STEPS", "FAILED", "AT", "SECONDS"],
          [(lane["lane"], lane["steps"], lane["failed"] or "", f"{lane['start']:.2f}",
            f"{lane['seconds']:.2f}") for lane in details["lanes"]],
          title="timeline (seconds since the first step; every step: show --steps)")
