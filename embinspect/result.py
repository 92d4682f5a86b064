"""How a result shows itself outside the CLI: plain text for a REPL (``str``) and an HTML
table for Jupyter (``_repr_html_``), both drawn from ``to_dict()``.

Ground floor: imports only ``embinspect.text``, so every result module may use it. A result
that deserves a better picture than the generic one (a ranked list, a matrix) returns a
``Grid`` from ``_grid()``. Every string that came from a checkpoint is treated as hostile:
escaped for HTML, and its control characters written as escapes in plain text, as the
CLI writes them (``embinspect.text``).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from embinspect.text import terminal_cell, terminal_line

# The version of the JSON documents (``--format json``, ``to_dict()``) that carry it:
# neighbors, analogy, compare and tokens. 1 was the format before it was written down; 2
# added ``schema_version``, ``provenance`` and ``metric``. Raised when a field is renamed
# or removed, or its meaning changes; not for a new field.
SCHEMA_VERSION = 2

# Long lists of numbers (a whole row with vectors=True) are cut to this many in pictures;
# to_dict() always has them all.
SHOWN_VALUES = 8
# Lists of records (tokens, neighbors, pairs, answers) are cut to this many rows.
SHOWN_ROWS = 50


@dataclass(frozen=True)
class Grid:
    """A titled table: ``rows`` of cells under ``header`` (row labels in column 0 when
    ``row_labels``), and lines of text before and after it."""

    title: str
    header: list[str]
    rows: list[list[Any]]
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    row_labels: bool = False


class Displayable:
    """Mixin of the result dataclasses: ``str()`` and ``_repr_html_()`` from ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def _grid(self) -> Grid | None:
        """A picture better than the generic one, or None."""
        return None

    def __str__(self) -> str:
        grid = self._grid()
        if grid is not None:
            return grid_text(grid)
        return f"{type(self).__name__}\n" + "\n".join(_text_lines(self.to_dict(), "  "))

    def _repr_html_(self) -> str:
        grid = self._grid()
        if grid is not None:
            return grid_html(grid)
        caption = html.escape(type(self).__name__)
        return f'<div class="embinspect">{_html_value(self.to_dict(), caption)}</div>'

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's terminal shows ``str()``, not the dataclass's long repr."""
        printer.text(type(self).__name__ if cycle else str(self))


# ---------------------------------------------------------------------------------------
# Cells


def cell_text(value: Any) -> str:
    """One value as plain text: floats to 6 significant digits, None as '-', strings with
    control and other unprintable characters escaped and backslashes doubled (a token may
    hold ANSI escapes), as the CLI's table cells."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return terminal_cell(value)
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            shown = ", ".join(cell_text(v) for v in value[:SHOWN_VALUES])
            more = f", … ({len(value)} values)" if len(value) > SHOWN_VALUES else ""
            return f"[{shown}{more}]"
        return terminal_line(json.dumps(value, ensure_ascii=False, default=str))
    if isinstance(value, dict):
        parts = ", ".join(f"{cell_text(k)}: {cell_text(v)}" for k, v in value.items())
        return "{" + parts + "}"
    return cell_text(str(value))


def _float(value: float) -> str:
    return f"{value:.6g}"


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _columns(records: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    return list(columns)


# ---------------------------------------------------------------------------------------
# Plain text


def _text_lines(data: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in data.items():
        name = cell_text(key)
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{name}:")
            lines.extend(_text_lines(value, indent + "  "))
        elif _is_records(value):
            columns = _columns(value)
            rows = [[record.get(c) for c in columns] for record in value[:SHOWN_ROWS]]
            lines.append(f"{indent}{name}: {len(value)}")
            lines.extend(indent + "  " + line for line in _aligned(columns, rows))
            if len(value) > SHOWN_ROWS:
                lines.append(f"{indent}  … {len(value) - SHOWN_ROWS} more")
        else:
            lines.append(f"{indent}{name}: {cell_text(value)}")
    return lines


def _aligned(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[cell_text(h) for h in header]] + [[cell_text(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(header))
    ]
    lines = []
    for row in cells:
        parts = [
            text.rjust(width) if right else text.ljust(width)
            for text, width, right in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def grid_text(grid: Grid) -> str:
    lines = [cell_text(grid.title)]
    lines.extend(cell_text(line) for line in grid.before)
    if grid.header:
        lines.extend("  " + line for line in _aligned(grid.header, grid.rows))
    lines.extend(cell_text(line) for line in grid.after)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# HTML


def _h(value: Any) -> str:
    return html.escape(cell_text(value), quote=True)


def _html_value(data: dict[str, Any], caption: str | None) -> str:
    """A key/value table; nested dicts as nested tables, lists of records as tables."""
    parts = ["<table>"]
    if caption is not None:
        parts.append(f'<caption style="text-align:left"><b>{caption}</b></caption>')
    for key, value in data.items():
        if isinstance(value, dict) and value:
            shown = _html_value(value, None)
        elif _is_records(value):
            columns = _columns(value)
            rows = [[record.get(c) for c in columns] for record in value[:SHOWN_ROWS]]
            shown = _html_table(columns, rows)
            if len(value) > SHOWN_ROWS:
                shown += f"<div>… {len(value) - SHOWN_ROWS} more</div>"
        else:
            shown = _h(value)
        parts.append(f'<tr><th style="text-align:left">{_h(key)}</th><td>{shown}</td></tr>')
    parts.append("</table>")
    return "".join(parts)


def _html_table(header: list[str], rows: list[list[Any]], row_labels: bool = False) -> str:
    parts = ["<table><thead><tr>"]
    parts.extend(f"<th>{_h(h)}</th>" for h in header)
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>")
        for i, value in enumerate(row):
            tag = "th" if row_labels and i == 0 else "td"
            align = (
                ' style="text-align:right"'
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else ""
            )
            parts.append(f"<{tag}{align}>{_h(value)}</{tag}>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def grid_html(grid: Grid) -> str:
    parts = ['<div class="embinspect">', f"<div><b>{_h(grid.title)}</b></div>"]
    parts.extend(f"<div>{_h(line)}</div>" for line in grid.before)
    if grid.header:
        parts.append(_html_table(grid.header, grid.rows, grid.row_labels))
    parts.extend(f"<div>{_h(line)}</div>" for line in grid.after)
    parts.append("</div>")
    return "".join(parts)
