"""Change from baseline (derive_var_chg, derive_var_pchg, derive_var_r2base)."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.derive import derive_var_chg, derive_var_pchg, derive_var_r2base

KEYS = ["USUBJID", "ADY"]


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


IN_SCHEMA = {"USUBJID": pl.String, "ADY": pl.Int64, "AVAL": pl.Float64, "BASE": pl.Float64}

CASES = [
    # USUBJID, ADY, AVAL, BASE, expected CHG, expected R2BASE
    ("S1", -90, 10.0, 14.0, None, None),  # before baseline
    ("S1", 1, 14.0, 14.0, None, None),  # the baseline record itself
    ("S1", 2, 21.0, 14.0, 7.0, 1.5),  # first post-baseline day
    ("S1", 29, 7.0, 14.0, -7.0, 0.5),
    ("S1", 57, None, 14.0, None, None),  # missing value
    ("S2", 29, 31.0, None, None, None),  # no baseline
    ("S3", 29, 2.0, 0.0, 2.0, None),  # baseline 0: change defined, ratio not
    ("S4", -3, 5.0, 4.0, None, None),  # pre-baseline even though after an earlier baseline record
]


def test_chg_only_post_baseline():
    data = frame(IN_SCHEMA, [c[:4] for c in CASES])
    expected = frame({**IN_SCHEMA, "CHG": pl.Float64}, [c[:5] for c in CASES])
    assert_frame_equal(derive_var_chg(data).sort(KEYS), expected.sort(KEYS))


def test_r2base_post_baseline_and_null_for_zero_or_missing_base():
    data = frame(IN_SCHEMA, [c[:4] for c in CASES])
    expected = frame({**IN_SCHEMA, "R2BASE": pl.Float64}, [(*c[:4], c[5]) for c in CASES])
    assert_frame_equal(derive_var_r2base(data).sort(KEYS), expected.sort(KEYS))


def test_chg_pchg_and_r2base_carry_no_float_noise():
    data = frame(IN_SCHEMA, [("S1", 29, 0.3, 0.1), ("S2", 29, 42.3, 0.2), ("S3", 29, 12.3456789, 12.3456788),
                             ("S4", 29, 99999.9, 0.1)])
    assert 0.3 - 0.1 != 0.2  # what the subtraction alone gives
    assert derive_var_chg(data).get_column("CHG").to_list() == [0.2, 42.1, 0.0000001, 99999.8]
    ratios = frame(IN_SCHEMA, [("S1", 29, 0.3, 0.1), ("S2", 29, 0.3, 0.3)])
    assert 0.3 / 0.1 != 3.0
    assert derive_var_r2base(ratios).get_column("R2BASE").to_list() == [3.0, 1.0]
    changes = frame({**IN_SCHEMA, "CHG": pl.Float64}, [("S1", 29, 0.5, 0.3, 0.2)])
    assert 100 * 0.2 / 0.3 != 66.666666667
    assert derive_var_pchg(changes).get_column("PCHG").to_list() == [66.666666667]


def test_chg_and_r2base_baseline_day_comes_from_the_argument():
    data = frame(IN_SCHEMA, [("S1", 1, 14.0, 7.0)])
    assert derive_var_chg(data, baseline_day=0).get_column("CHG").to_list() == [7.0]
    assert derive_var_r2base(data, baseline_day=0).get_column("R2BASE").to_list() == [2.0]


def test_pchg_null_when_base_is_zero_or_missing():
    schema = {"USUBJID": pl.String, "ADY": pl.Int64, "CHG": pl.Float64, "BASE": pl.Float64}
    data = frame(schema, [
        ("S1", 29, 7.0, 14.0),
        ("S1", 57, -3.5, 14.0),
        ("S1", 1, None, 14.0),  # baseline record: no change, no percent change
        ("S2", 29, None, None),  # no baseline
        ("S3", 29, 2.0, 0.0),  # baseline 0
        ("S4", 29, 3.0, -6.0),  # negative baseline (z-scores): plain formula
    ])  # fmt: skip
    expected = frame({**schema, "PCHG": pl.Float64}, [
        ("S1", 29, 7.0, 14.0, 50.0),
        ("S1", 57, -3.5, 14.0, -25.0),
        ("S1", 1, None, 14.0, None),
        ("S2", 29, None, None, None),
        ("S3", 29, 2.0, 0.0, None),
        ("S4", 29, 3.0, -6.0, -50.0),
    ])  # fmt: skip
    assert_frame_equal(derive_var_pchg(data).sort(KEYS), expected.sort(KEYS))


def test_pchg_and_r2base_only_for_parameters_on_a_ratio_scale():
    schema = {"USUBJID": pl.String, "PARAMCD": pl.String, "ADY": pl.Int64, "AVAL": pl.Float64, "BASE": pl.Float64}
    data = frame(schema, [
        ("S1", "TREGPCT", 29, 9.0, 6.0),
        ("S1", "TRSIG", 29, 1.77, -0.0315),  # a z-score: its ratio to baseline means nothing
    ])  # fmt: skip
    changed = derive_var_chg(data)
    pchg = derive_var_pchg(changed, ratio_params={"TREGPCT"}).get_column("PCHG").to_list()
    r2base = derive_var_r2base(changed, ratio_params={"TREGPCT"}).get_column("R2BASE").to_list()
    assert pchg == [50.0, None] and r2base == [1.5, None]
    assert changed.get_column("CHG").to_list() == [3.0, pytest.approx(1.8015)]
    # without ratio_params every parameter gets both, as before
    assert derive_var_pchg(changed).get_column("PCHG").null_count() == 0
