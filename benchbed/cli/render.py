"""Output: rich tables on a terminal, plain aligned text when piped, JSON on request.

Every line for a human passes through `terminal.safe` (a value can neither move the cursor
nor start a line of its own), and rich reads no markup in data: a value such as `[/]` or
`[link=...]` prints as it is written. JSON stays exact (json.dumps escapes by itself).
"""

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchbed.terminal import safe


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    cells = [[safe(c) for c in columns]] + [[safe(c) for c in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Column, Table
        from rich.text import Text

        # Text objects, not strings: rich would read a string's [markup] and :emoji: codes
        rich_table = Table(*(Column(Text(c)) for c in cells[0]),
                           title=Text(safe(title)) if title else None)
        for row in cells[1:]:
            rich_table.add_row(*(Text(cell) for cell in row))
        Console(markup=False, emoji=False, highlight=False).print(rich_table)
        return
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in cells]
    if title:
        lines.insert(0, safe(title))
    sys.stdout.write("\n".join(lines) + "\n")


def text(message: str) -> None:
    """One line on stdout; a newline inside `message` is shown as an escape."""
    sys.stdout.write(safe(message) + "\n")


def note(message: str) -> None:
    """Progress and hints go to stderr so that stdout stays parseable."""
    sys.stderr.write(safe(message) + "\n")


def document(content: str, output: str | None) -> None:
    """A whole document (an export, a report) to stdout, or to `output` readable by its owner
    only, since exports and reports can carry credentials."""
    if output is None:
        sys.stdout.write(content)
        return
    from benchbed import paths

    paths.write_private(Path(output), content)
    note(f"wrote {output} (mode 0600)")


def yaml(data: Any, indent: int = 0) -> None:
    """`data` as YAML on stdout, a string that needs escapes double-quoted with them, so that
    a value spans one line whatever it holds."""
    import yaml as pyyaml

    class Dumper(pyyaml.SafeDumper):
        def represent_str(self, value: str) -> pyyaml.ScalarNode:
            return self.represent_scalar("tag:yaml.org,2002:str", value,
                                         style='"' if safe(value) != value else None)

    Dumper.add_representer(str, Dumper.represent_str)
    dumped = pyyaml.dump(data, Dumper=Dumper, sort_keys=False, width=1 << 30)
    for line in dumped.splitlines():
        sys.stdout.write(" " * indent + safe(line) + "\n")


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
