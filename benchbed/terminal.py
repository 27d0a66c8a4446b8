"""Text made safe for a terminal: what a value holds is shown, never acted on.

A config key, a step detail or a remote service's error message may hold control
characters: ESC starts sequences that clear the screen, move the cursor or open a hyperlink
(OSC 8), CR returns to the start of the line, a newline starts a line the value chooses (a
forged "deployment ready"), and bidi overrides reorder what is read. `safe` shows each as an
escape, so everything benchbed prints for a human (render's tables and lines, error lines,
progress) is one visible line per value. JSON output needs none of this: json.dumps escapes.
"""

import re
import unicodedata

# Everything outside printable ASCII is looked at; most text never gets past this.
_SUSPECT = re.compile(r"[^\x20-\x7e]")
# control (C0, DEL, C1), format (bidi overrides, zero-width), surrogate, line/paragraph separator
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: object) -> str:
    """`text` as one line a terminal shows as it is: control, format and line-break
    characters become escapes (`\\x1b`, `\\r`, `\\n`, `\\u202e`); other text is unchanged."""
    return _SUSPECT.sub(_escape, str(text))
