"""Baseline flag and baseline value (derive_var_ablfl, derive_var_base)."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.derive import baseline_window, derive_var_ablfl, derive_var_base
from pipelines.study import load_study

KEYS = ["USUBJID", "PARAMCD", "ADY", "SRCDLVID", "SRCROW"]


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


IN_SCHEMA = {"USUBJID": pl.String, "PARAMCD": pl.String, "ADY": pl.Int64, "AVAL": pl.Float64,
             "SRCDLVID": pl.Int64, "SRCROW": pl.Int64}  # fmt: skip
OUT_SCHEMA = {**IN_SCHEMA, "ABLFL": pl.String}

ABLFL_CASES = [
    # USUBJID, PARAMCD, ADY, AVAL, SRCDLVID, SRCROW, expected ABLFL
    # last valid value on or before day 1 wins over earlier ones; post-day-1 values never do
    ("S1", "NFLS", -90, 10.0, 1, 1, None),
    ("S1", "NFLS", -3, 12.0, 9, 2, None),  # the later day wins before the later delivery
    ("S1", "NFLS", 1, 14.0, 1, 3, "Y"),
    ("S1", "NFLS", 29, 15.0, 1, 4, None),
    # the same subject's other parameter is flagged on its own
    ("S1", "TREGPCT", -5, 5.0, 2, 1, "Y"),
    ("S1", "TREGPCT", 2, 9.0, 2, 2, None),
    # a null AVAL on day 1 falls back to the earlier valid value
    ("S2", "NFLS", -5, 20.0, 1, 5, "Y"),
    ("S2", "NFLS", 1, None, 1, 6, None),
    # only post-baseline values: no baseline at all
    ("S3", "NFLS", 2, 30.0, 1, 7, None),
    ("S3", "NFLS", 29, 31.0, 1, 8, None),
    # a record without a study day is never baseline
    ("S3", "NFLS", None, 29.0, 1, 9, None),
    # tie on the same day: the later delivery wins, even with an earlier row number
    ("S4", "NFLS", 1, 40.0, 1, 50, None),
    ("S4", "NFLS", 1, 41.0, 2, 10, "Y"),
    # tie in the same delivery: the later row wins
    ("S5", "NFLS", 1, 50.0, 3, 3, None),
    ("S5", "NFLS", 1, 51.0, 3, 7, "Y"),
]


def test_ablfl_last_valid_on_or_before_day_1_with_tie_rule():
    data = frame(IN_SCHEMA, [c[:-1] for c in ABLFL_CASES])
    expected = frame(OUT_SCHEMA, ABLFL_CASES)
    actual = derive_var_ablfl(data)
    assert_frame_equal(actual.sort(KEYS), expected.sort(KEYS))


def test_ablfl_baseline_day_comes_from_the_argument():
    data = frame(IN_SCHEMA, [c[:-1] for c in ABLFL_CASES if c[0] == "S1" and c[1] == "NFLS"])
    expected = frame(OUT_SCHEMA, [
        ("S1", "NFLS", -90, 10.0, 1, 1, None),
        ("S1", "NFLS", -3, 12.0, 9, 2, "Y"),
        ("S1", "NFLS", 1, 14.0, 1, 3, None),
        ("S1", "NFLS", 29, 15.0, 1, 4, None),
    ])  # fmt: skip
    assert_frame_equal(derive_var_ablfl(data, baseline_day=-1).sort(KEYS), expected.sort(KEYS))


def test_ablfl_result_does_not_depend_on_row_order():
    data = frame(IN_SCHEMA, [c[:-1] for c in ABLFL_CASES])
    forward = derive_var_ablfl(data).sort(KEYS)
    backward = derive_var_ablfl(data.reverse()).sort(KEYS)
    assert_frame_equal(forward, backward)


BASE_IN = {"USUBJID": pl.String, "PARAMCD": pl.String, "ADY": pl.Int64, "AVAL": pl.Float64, "ABLFL": pl.String}


def test_base_is_the_baseline_value_on_every_record_of_the_parameter():
    data = frame(BASE_IN, [
        ("S1", "NFLS", -90, 10.0, None),
        ("S1", "NFLS", 1, 14.0, "Y"),
        ("S1", "NFLS", 29, 15.0, None),
        ("S1", "NFLS", 57, None, None),
        ("S1", "TREGPCT", 1, 5.0, "Y"),
        ("S1", "TREGPCT", 29, 9.0, None),
        ("S2", "NFLS", 29, 31.0, None),  # no baseline record
    ])  # fmt: skip
    expected = frame({**BASE_IN, "BASE": pl.Float64}, [
        ("S1", "NFLS", -90, 10.0, None, 14.0),
        ("S1", "NFLS", 1, 14.0, "Y", 14.0),
        ("S1", "NFLS", 29, 15.0, None, 14.0),
        ("S1", "NFLS", 57, None, None, 14.0),
        ("S1", "TREGPCT", 1, 5.0, "Y", 5.0),
        ("S1", "TREGPCT", 29, 9.0, None, 5.0),
        ("S2", "NFLS", 29, 31.0, None, None),
    ])  # fmt: skip
    keys = ["USUBJID", "PARAMCD", "ADY"]
    assert_frame_equal(derive_var_base(data).sort(keys), expected.sort(keys))


def test_base_refuses_two_baseline_records():
    data = frame(BASE_IN, [("S1", "NFLS", -3, 12.0, "Y"), ("S1", "NFLS", 1, 14.0, "Y")])
    with pytest.raises(ValueError, match="more than one ABLFL"):
        derive_var_base(data)


def test_ablfl_only_from_the_baseline_window_not_from_screening():
    """A subject whose BASELINE sample is missing has no baseline: the screening value, taken
    before the riluzole run-in, is not one."""
    data = frame(IN_SCHEMA, [("S1", "NFLS", -87, 34.0, 1, 1), ("S1", "NFLS", 85, 40.0, 1, 2),
                             ("S2", "NFLS", -87, 20.0, 1, 3), ("S2", "NFLS", -14, 21.0, 1, 4)])
    flagged = derive_var_ablfl(data, earliest_day=-14).sort(KEYS)
    assert flagged["ABLFL"].to_list() == [None, None, None, "Y"]
    assert derive_var_ablfl(data).sort(KEYS)["ABLFL"].to_list() == ["Y", None, None, "Y"]


def test_the_baseline_window_is_the_study_visit_containing_day_1():
    visits = load_study().visits
    assert baseline_window(visits) == (-14, 1)
    assert baseline_window(visits, baseline_day=-100) == (-126, -100)
    with pytest.raises(ValueError, match="no visit window contains the baseline day 2"):
        baseline_window([{"visit_code": "M1", "window_lo": 24, "window_hi": 34}], baseline_day=2)
