"""How a string from outside (a checkpoint's tokens and metadata, a file or tensor name, a
query, a server's message) is made safe to print on a terminal: one convention, used by
the CLI's every human-readable format and its messages, and by the results' ``str()``.

A terminal acts on some characters instead of showing them: ESC starts colour, cursor,
hyperlink (OSC 8) and clipboard (OSC 52) sequences, C1 0x9b is CSI on its own, BEL rings,
backspace and CR overwrite, and bidi controls (U+202E ...) reorder what follows. So every
character Python does not call printable (``str.isprintable``: Unicode's Other and
Separator categories but the ASCII space) is written as an escape:

- tab, newline, CR as ``\\t``, ``\\n``, ``\\r``;
- the other C0 controls and DEL as ``\\xNN`` (ESC is ``\\x1b``);
- a byte that was not UTF-8 (kept as a lone surrogate U+DC80..U+DCFF by surrogateescape,
  as Python decodes argv and embinspect stdin) as ``\\xNN``, the byte itself: so ``\\xNN``
  always means the byte NN;
- any other character as ``\\uNNNN`` (C1 controls, bidi controls, other lone surrogates,
  zero-width and odd spaces) or ``\\UNNNNNNNN`` above U+FFFF.

Printable text, non-ASCII included, is left as it is. ``terminal_cell`` (table cells, TSV,
CSV) also doubles a literal backslash, so the form is reversible: distinct strings stay
distinct. ``terminal_line`` (one-line messages on stderr) does not: messages already quote
queries with Python's escapes, which must stay readable as they are.

Ground floor: imports nothing of embinspect.
"""

from __future__ import annotations

import re

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    """One unprintable character as its escape."""
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # the byte surrogateescape kept
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_cell(text: str) -> str:
    """``text`` as a table, TSV or CSV cell: every unprintable character escaped and a
    backslash doubled (reversible), with no control character left at all."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\" if char == "\\" else char if char.isprintable() else _escape(char) for char in text
    )


def terminal_line(text: str) -> str:
    """``text`` as (part of) a one-line message: every unprintable character escaped,
    newlines included, backslashes left as they are."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def escaped_whole(text: str) -> str:
    """Every character of ``text`` as its escape: for text a terminal would draw as
    nothing (a lone combining mark or skin-tone modifier as a whole table cell)."""
    return "".join(_escape(char) if char != "\\" else "\\\\" for char in text)


def brief(text: object, limit: int = 200) -> str:
    """Outside words (a library's error, a server's answer) for a message: on one line,
    cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


# A byte that was not UTF-8 as repr() writes it (a surrogateescape surrogate, \udcNN).
_ESCAPED_BYTE = re.compile(r"\\udc([89a-f][0-9a-f])")


def quoted(text: str, limit: int = 60) -> str:
    """A query quoted for a one-line message, cut when long; bytes that were not UTF-8
    show as ``\\xNN``."""
    shown = _ESCAPED_BYTE.sub(r"\\x\1", repr(text[:limit]))
    return shown if len(text) <= limit else shown + f"... ({len(text):,} characters)"
