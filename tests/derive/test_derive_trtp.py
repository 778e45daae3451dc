"""Planned and actual treatment from the subject's arm (derive_var_trtp)."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.derive import derive_var_trtp


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


ARMS = [{"armcd": "IL2", "arm": "ld-IL-2 + riluzole"}, {"armcd": "PBO", "arm": "placebo + riluzole"}]
SUBJECT = frame(
    {"usubjid": pl.String, "armcd": pl.String, "arm": pl.String, "sex": pl.String},
    [("S1", "IL2", "ld-IL-2 + riluzole", "M"), ("S2", "PBO", "placebo + riluzole", "F"), ("S3", None, None, "F")],
)
ADBM = frame({"USUBJID": pl.String, "PARAMCD": pl.String}, [("S1", "NFLS"), ("S1", "CD4CNT"), ("S2", "NFLS"), ("S3", "NFLS")])


def test_trtp_trta_and_trtpn_in_the_order_of_the_arms():
    expected = frame(
        {"USUBJID": pl.String, "PARAMCD": pl.String, "TRTP": pl.String, "TRTA": pl.String, "TRTPN": pl.Int64},
        [
            ("S1", "NFLS", "ld-IL-2 + riluzole", "ld-IL-2 + riluzole", 1),
            ("S1", "CD4CNT", "ld-IL-2 + riluzole", "ld-IL-2 + riluzole", 1),
            ("S2", "NFLS", "placebo + riluzole", "placebo + riluzole", 2),
            ("S3", "NFLS", None, None, None),  # never randomised
        ],
    )
    keys = ["USUBJID", "PARAMCD"]
    assert_frame_equal(derive_var_trtp(ADBM, SUBJECT, ARMS).sort(keys), expected.sort(keys), check_column_order=False)


def test_trtpn_follows_the_arms_argument():
    actual = derive_var_trtp(ADBM, SUBJECT, ["PBO", "IL2"])
    assert dict(actual.select("USUBJID", "TRTPN").unique().drop_nulls().iter_rows()) == {"S1": 2, "S2": 1}


def test_trtp_refuses_an_arm_code_missing_from_the_arms():
    with pytest.raises(ValueError, match=r"\['PBO'\] are not in the arms"):
        derive_var_trtp(ADBM, SUBJECT, ["IL2"])


def test_trtp_refuses_a_subject_table_with_duplicate_subjects():
    with pytest.raises(ValueError, match="several rows per USUBJID"):
        derive_var_trtp(ADBM, pl.concat([SUBJECT, SUBJECT]), ARMS)
