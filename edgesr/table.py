"""Plain-text tables: one header, a rule, aligned columns (text left, numbers right)."""

from __future__ import annotations

from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool] | None = None) -> str:
    """Columns as wide as their widest cell; `right[i]` right-aligns column i (default: columns
    whose cells are all numbers)."""
    cells = [[str(c) for c in row] for row in rows]
    if right is None:
        right = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) if rows
                 else False for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return " ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    header = line(list(headers))
    return "\n".join([header, "-" * len(header)] + [line(r) for r in cells])
