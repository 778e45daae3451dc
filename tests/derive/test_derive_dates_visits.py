"""ADT/ADY and the analysis visit by window (derive_vars_dt_dy, derive_vars_avisit)."""

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.derive import derive_vars_avisit, derive_vars_dt_dy
from pipelines.study import load_study


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


# Hand-written schedule (a subset shaped like study.yaml) so the tests do not move with it.
VISITS = [
    {"visit_code": "SCREEN", "visit_num": 0, "study_day": -90, "window_lo": -126, "window_hi": -60},
    {"visit_code": "BASELINE", "visit_num": 1, "study_day": 1, "window_lo": -14, "window_hi": 1},
    {"visit_code": "M1", "visit_num": 2, "study_day": 29, "window_lo": 24, "window_hi": 34},
    {"visit_code": "M3", "visit_num": 4, "study_day": 85, "window_lo": 78, "window_hi": 92},
]


def test_dt_dy_takes_collection_date_and_study_day():
    core = frame(
        {"id": pl.Int64, "collection_date": pl.Date, "study_day": pl.Int32},
        [(1, date(2020, 1, 1), -1), (2, date(2020, 1, 2), 1), (3, None, None)],
    )
    expected = frame(
        {"id": pl.Int64, "collection_date": pl.Date, "study_day": pl.Int32, "ADT": pl.Date, "ADY": pl.Int64},
        [
            (1, date(2020, 1, 1), -1, date(2020, 1, 1), -1),
            (2, date(2020, 1, 2), 1, date(2020, 1, 2), 1),
            (3, None, None, None, None),
        ],
    )
    assert_frame_equal(derive_vars_dt_dy(core).sort("id"), expected.sort("id"), check_column_order=False)


def test_dt_dy_refuses_a_day_zero():
    core = frame({"collection_date": pl.Date, "study_day": pl.Int64}, [(date(2020, 1, 1), 0)])
    with pytest.raises(ValueError, match="no day 0"):
        derive_vars_dt_dy(core)


def test_avisit_windows_are_inclusive_and_days_outside_stay_unassigned():
    adbm = frame({"ADY": pl.Int64}, [(d,) for d in [-127, -126, -60, -59, -15, -14, 1, 2, 23, 24, 29, 34, 35, 92, 93]] + [(None,)])
    v = {x["visit_code"]: (x["visit_code"], x["visit_num"], x["study_day"], x["window_lo"], x["window_hi"]) for x in VISITS}
    none = (None, None, None, None, None)
    expected_by_day = {
        -127: none, -126: v["SCREEN"], -60: v["SCREEN"], -59: none,
        -15: none, -14: v["BASELINE"], 1: v["BASELINE"], 2: none,
        23: none, 24: v["M1"], 29: v["M1"], 34: v["M1"], 35: none,
        92: v["M3"], 93: none, None: none,
    }  # fmt: skip
    expected = frame(
        {"ADY": pl.Int64, "AVISIT": pl.String, "AVISITN": pl.Int64, "AWTARGET": pl.Int64, "AWLO": pl.Int64, "AWHI": pl.Int64},
        [(day, *assigned) for day, assigned in expected_by_day.items()],
    )
    actual = derive_vars_avisit(adbm, VISITS)
    assert_frame_equal(actual.sort("ADY"), expected.sort("ADY"))


def test_avisit_refuses_overlapping_windows():
    visits = [
        {"visit_code": "A", "visit_num": 1, "study_day": 5, "window_lo": 1, "window_hi": 10},
        {"visit_code": "B", "visit_num": 2, "study_day": 15, "window_lo": 10, "window_hi": 20},
    ]
    with pytest.raises(ValueError, match="overlap: A .* and B"):
        derive_vars_avisit(frame({"ADY": pl.Int64}, [(3,)]), visits)


def test_avisit_accepts_the_study_definition_visits():
    study = load_study()
    baseline = study.visit("BASELINE")
    actual = derive_vars_avisit(frame({"ADY": pl.Int64}, [(baseline.study_day,)]), study.visits)
    assert actual.row(0) == (baseline.study_day, "BASELINE", baseline.visit_num, baseline.study_day,
                             baseline.window_lo, baseline.window_hi)  # fmt: skip
