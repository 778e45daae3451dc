"""Results outside the limits of quantification (derive_vars_blq)."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.derive import derive_vars_blq


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


IN_SCHEMA = {
    "id": pl.Int64, "AVAL": pl.Float64, "reported_result": pl.String,
    "blq_flag": pl.Boolean, "alq_flag": pl.Boolean, "lloq": pl.Float64, "uloq": pl.Float64,
}  # fmt: skip
OUT_SCHEMA = {
    **IN_SCHEMA,
    "AVALC": pl.String, "BLQFL": pl.String, "ALQFL": pl.String, "IMPUTFL": pl.String, "IMPUTRL": pl.String,
}  # fmt: skip

INPUT = frame(
    IN_SCHEMA,
    [
        (1, 55.0, "55.0", False, False, 3.0, 1500.0),  # quantified: untouched
        (2, None, "<3.0", True, False, 3.0, 1500.0),  # below LLOQ: imputed lloq * factor
        (3, None, ">1500", False, True, 3.0, 1500.0),  # above ULOQ: imputed uloq
        (4, 5.2, "5.2", None, None, None, None),  # flow cytometry: no limits, flags null
        (5, None, "<LLOQ", True, False, None, None),  # below LLOQ without the limit: flagged, not imputed
        (6, None, None, False, False, 3.0, 1500.0),  # missing result stays missing
        (7, 68.0, "0.0680", False, False, 3.0, 1500.0),  # reported in ng/mL, AVAL converted to pg/mL
    ],
)


def test_blq_imputes_half_the_lloq_and_caps_at_the_uloq():
    expected = frame(
        OUT_SCHEMA,
        [
            (1, 55.0, "55.0", False, False, 3.0, 1500.0, "55.0", None, None, None, None),
            (2, 1.5, "<3.0", True, False, 3.0, 1500.0, "<3.0", "Y", None, "Y", "LLOQ/2"),
            (3, 1500.0, ">1500", False, True, 3.0, 1500.0, ">1500.0", None, "Y", "Y", "ULOQ"),
            (4, 5.2, "5.2", None, None, None, None, "5.2", None, None, None, None),
            (5, None, "<LLOQ", True, False, None, None, "<LLOQ", "Y", None, None, None),
            (6, None, None, False, False, 3.0, 1500.0, None, None, None, None, None),
            (7, 68.0, "0.0680", False, False, 3.0, 1500.0, "68.0", None, None, None, None),
        ],
    )
    actual = derive_vars_blq(INPUT, "LLOQ/2", 0.5)
    assert_frame_equal(actual.sort("id"), expected.sort("id"), check_column_order=False)


def test_blq_rule_name_and_factor_come_from_the_arguments():
    actual = derive_vars_blq(INPUT, "LLOQ", 1.0, alq_imputation_rule_name="ULOQ-CAP").sort("id")
    assert actual.filter(pl.col("id") == 2).select("AVAL", "IMPUTRL").row(0) == (3.0, "LLOQ")
    assert actual.filter(pl.col("id") == 3).select("AVAL", "IMPUTRL").row(0) == (1500.0, "ULOQ-CAP")


def test_blq_accepts_all_null_flag_columns():
    treg = frame(
        {"AVAL": pl.Float64, "reported_result": pl.String},
        [(5.2, "5.2")],
    ).with_columns(blq_flag=None, alq_flag=None, lloq=None, uloq=None)  # dtype Null, as from an empty join
    actual = derive_vars_blq(treg, "LLOQ/2", 0.5)
    assert actual.select("AVAL", "AVALC", "BLQFL", "ALQFL", "IMPUTFL", "IMPUTRL").row(0) == (5.2, "5.2", None, None, None, None)


def test_blq_refuses_a_row_flagged_both_ways():
    bad = INPUT.with_columns(blq_flag=pl.lit(True), alq_flag=pl.lit(True))
    with pytest.raises(ValueError, match="both below LLOQ and above ULOQ"):
        derive_vars_blq(bad, "LLOQ/2", 0.5)
