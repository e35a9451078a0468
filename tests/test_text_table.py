"""The CLI's summary table without pandas: the same rows and values as `SweepResults.summary()`."""

from __future__ import annotations

import math

from workbench.analysis.text_table import text_table


def test_numbers_are_right_aligned_to_three_decimals_and_text_left_aligned():
    table = text_table([{"variant": "abc", "label": "bm25@3", "f1": 0.12345, "failed_cells": 0},
                        {"variant": "defghi", "label": "dense@3 · a much longer label", "f1": None, "failed_cells": 12}])
    header, first, second = table.splitlines()
    assert header.split() == ["variant", "label", "f1", "failed_cells"]
    assert first.split()[:2] == ["abc", "bm25@3"] and first.index("bm25@3") == header.index("label")  # text: left
    assert first.index("0.123") + len("0.123") == header.index("f1") + len("f1")  # numbers: right, 3 decimals
    assert first.endswith(" 0") and second.endswith(" 12") and len(first) == len(second) == len(header)
    assert second.split()[-2] == "-"  # a missing value, not 0


def test_a_column_of_whole_numbers_has_no_decimals():
    table = text_table([{"failed_cells": 0.0, "tokens": 284.06}, {"failed_cells": 3.0, "tokens": 12.0}])
    assert table.splitlines()[1].split() == ["0", "284.060"]
    assert table.splitlines()[2].split() == ["3", "12.000"]


def test_long_text_is_cut_and_nan_shows_as_missing():
    table = text_table([{"label": "x" * 100, "mrr": math.nan}])
    row = table.splitlines()[1]
    assert "x" * 59 + "…" in row and "x" * 60 not in row
    assert row.rstrip().endswith("-")


def test_no_rows_say_so():
    assert text_table([]) == "(no variants)"


def test_the_summary_frame_and_the_printed_table_hold_the_same_values(swept):
    _, _, results = swept
    frame = results.summary()
    records = results.summary_records()
    assert list(frame.index) == [r["variant"] for r in records]
    assert list(frame.columns) == [c for c in records[0] if c != "variant"]
    for record in records:
        for column, value in record.items():
            if column != "variant" and isinstance(value, float):
                assert math.isclose(frame.loc[record["variant"], column], value)
    printed = results.summary_text().splitlines()
    assert len(printed) == len(records) + 1
    for record, line in zip(records, printed[1:]):
        assert line.startswith(record["variant"]) and f"{record['f1']:.3f}" in line
