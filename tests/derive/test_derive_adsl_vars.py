"""Subject-level derivations: pNfH stratum and Treg responder flag."""

import polars as pl
from polars.testing import assert_frame_equal, assert_series_equal

from pipelines.derive import compute_pnfh_stratum, derive_var_pnfh_stratum, derive_var_responder


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


def test_pnfh_stratum_low_at_the_cutpoint_high_above_null_when_missing():
    values = pl.Series("BPNFHC", [750.0, 3700.0, 3700.5, 12000.0, None, float("nan")])
    expected = pl.Series("BPNFHC", ["LOW", "LOW", "HIGH", "HIGH", None, None], dtype=pl.String)
    assert_series_equal(compute_pnfh_stratum(values, 3700), expected)


def test_pnfh_stratum_as_an_expression():
    adsl = frame({"USUBJID": pl.String, "BPNFHC": pl.Float64}, [("S1", 3700.0), ("S2", 3701.0), ("S3", None)])
    expected = frame(
        {"USUBJID": pl.String, "BPNFHC": pl.Float64, "PNFHSTR": pl.String},
        [("S1", 3700.0, "LOW"), ("S2", 3701.0, "HIGH"), ("S3", None, None)],
    )
    actual = adsl.with_columns(compute_pnfh_stratum(pl.col("BPNFHC"), 3700).alias("PNFHSTR"))
    assert_frame_equal(actual.sort("USUBJID"), expected.sort("USUBJID"))


ADBM_SCHEMA = {"USUBJID": pl.String, "PARAMCD": pl.String, "AVISIT": pl.String, "ANL01FL": pl.String,
               "R2BASE": pl.Float64}  # fmt: skip
ADBM = frame(ADBM_SCHEMA, [
    ("S1", "TREGPCT", "M3", "Y", 2.0),  # responder
    ("S2", "TREGPCT", "M3", "Y", 1.5),  # exactly the threshold: responder
    ("S3", "TREGPCT", "M3", "Y", 1.2),  # below: non-responder
    ("S3", "TREGPCT", "M1", "Y", 3.0),  # other visit: ignored
    ("S3", "CD4CNT", "M3", "Y", 3.0),  # other parameter: ignored
    ("S3", "TREGPCT", "M3", None, 4.0),  # not the analysis record: ignored
    ("S5", "TREGPCT", "M3", None, 2.0),  # only a non-analysis record: missing
    ("S6", "TREGPCT", "M3", "Y", None),  # analysis record without baseline: missing
])  # fmt: skip


def test_responder_y_n_or_missing():
    adsl = frame({"USUBJID": pl.String}, [(s,) for s in ["S1", "S2", "S3", "S4", "S5", "S6"]])
    expected = frame(
        {"USUBJID": pl.String, "TRRESPFL": pl.String},
        [("S1", "Y"), ("S2", "Y"), ("S3", "N"), ("S4", None), ("S5", None), ("S6", None)],
    )
    actual = derive_var_responder(adsl, ADBM, "TREGPCT", "M3", 1.5)
    assert_frame_equal(actual.sort("USUBJID"), expected.sort("USUBJID"))


def test_responder_rule_and_flag_name_come_from_the_arguments():
    adsl = frame({"USUBJID": pl.String}, [("S1",), ("S3",)])
    actual = derive_var_responder(adsl, ADBM, "TREGPCT", "M1", 2.5, flag_name="M1RESPFL")
    assert dict(actual.iter_rows()) == {"S1": None, "S3": "Y"}


def test_pnfh_stratum_of_a_censored_baseline_only_where_its_limit_places_it():
    schema = {"USUBJID": pl.String, "PARAMCD": pl.String, "ABLFL": pl.String, "AVAL": pl.Float64,
              "BLQFL": pl.String, "ALQFL": pl.String}  # fmt: skip
    adbm = frame(schema, [
        ("S1", "PNFHC", "Y", 2000.0, None, "Y"),   # above a ULOQ of 2000: could be either side of 3700
        ("S2", "PNFHC", "Y", 5000.0, None, "Y"),   # above a ULOQ of 5000: HIGH for certain
        ("S3", "PNFHC", "Y", 25.0, "Y", None),     # below an LLOQ of 50: LOW for certain
        ("S4", "PNFHC", "Y", 2500.0, "Y", None),   # below an LLOQ of 5000: could be either side
        ("S5", "PNFHC", "Y", 3700.0, None, None),  # quantified, at the cut-point: LOW
        ("S6", "PNFHC", None, 9000.0, None, None), # not the baseline record
        ("S7", "NFLS", "Y", 9000.0, None, None),   # another parameter
    ])  # fmt: skip
    adsl = frame({"USUBJID": pl.String}, [(f"S{i}",) for i in range(1, 8)])
    actual = derive_var_pnfh_stratum(adsl, adbm, "PNFHC", 3700, 0.5)
    assert dict(actual.iter_rows()) == {"S1": None, "S2": "HIGH", "S3": "LOW", "S4": None, "S5": "LOW",
                                        "S6": None, "S7": None}
