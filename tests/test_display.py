"""The side-by-side formatter of make demo: widths kept, long texts cut, footers aligned."""

from __future__ import annotations

from hoe.generation.display import side_by_side


def test_columns_fit_the_width_long_texts_are_cut_and_footers_share_the_last_line():
    long = "word " * 80
    out = side_by_side(
        [("λ a", long, "r 0.90"), ("λ b", "Short.", "r 0.10"), ("λ c", "", "r 0.00")], width=60
    )
    lines = out.splitlines()
    assert all(len(line) <= 60 for line in lines)
    assert lines[0].split(" | ")[0].strip() == "λ a" and lines[0].rstrip().endswith("λ c")
    body = lines[2:-2]
    assert len(body) == 6 and body[-1].split(" | ")[0].rstrip().endswith("…")  # cut to 6 lines, marked
    assert body[0].split(" | ")[1].strip() == "Short." and body[0].split(" | ")[2].strip() == "(empty)"
    assert [c.strip() for c in lines[-1].split(" | ")] == ["r 0.90", "r 0.10", "r 0.00"]


def test_nothing_to_show_is_an_empty_string():
    assert side_by_side([]) == ""
