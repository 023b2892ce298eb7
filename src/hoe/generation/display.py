"""Answers for people to read: several responses side by side in a terminal (``make demo``)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence


def side_by_side(
    columns: Sequence[tuple[str, str, str]], width: int = 120, max_lines: int = 6, gap: str = " | "
) -> str:
    """``columns`` of (header, text, footer) side by side in at most ``width`` characters per line.

    Each text is wrapped to its column (whitespace collapsed) and cut to ``max_lines``, the last kept line
    ending in " …"; an empty text shows as "(empty)". Headers go on the first line, a rule under them, and the
    footers (e.g. the scores) on the last line, aligned however long the texts are.
    """
    if not columns:
        return ""
    col = max(8, (width - len(gap) * (len(columns) - 1)) // len(columns))
    cells = []
    for header, text, footer in columns:
        lines = textwrap.wrap(" ".join(text.split()), col) or ["(empty)"]
        if len(lines) > max_lines:
            kept = lines[: max_lines - 1]
            kept.append(textwrap.shorten(" ".join(lines[max_lines - 1 :]), col, placeholder=" …"))
            lines = kept
        cells.append((textwrap.shorten(header, col, placeholder="…"), lines, footer[:col]))
    height = max(len(lines) for _, lines, _ in cells)
    rows = [[h for h, _, _ in cells], ["-" * min(col, 20)] * len(cells)]
    rows += [[lines[i] if i < len(lines) else "" for _, lines, _ in cells] for i in range(height)]
    rows += [[""] * len(cells), [f for _, _, f in cells]]
    return "\n".join(gap.join(c.ljust(col) for c in row).rstrip() for row in rows)
