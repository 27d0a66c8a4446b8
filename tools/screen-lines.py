#!/usr/bin/env python3
"""Count the lines a terminal shows after receiving stdin: newlines, carriage returns,
cursor-up and erase-line sequences applied, as progress bars and status lines use them."""

import re
import sys

CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|([\r\n])|([^\x1b\r\n]+)|\x1b")


def screen(text: str) -> list[str]:
    lines, row, col = [""], 0, 0
    for match in CONTROL.finditer(text):
        argument, code, control, printable = match.groups()
        if printable:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + printable + line[col + len(printable):]
            col += len(printable)
        elif control == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif control == "\r":
            col = 0
        elif code == "A":
            row = max(0, row - int(argument or 1))
        elif code == "K":
            lines[row] = "" if argument == "2" else lines[row][:col]
    return lines


if __name__ == "__main__":
    shown = screen(sys.stdin.buffer.read().decode(errors="replace"))
    print(sum(1 for line in shown if line.strip()))
