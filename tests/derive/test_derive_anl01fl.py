"""One analysis record per subject x parameter x analysis visit (derive_var_anl01fl)."""

import polars as pl
from polars.testing import assert_frame_equal

from pipelines.derive import derive_var_anl01fl

KEYS = ["USUBJID", "PARAMCD", "ADY", "SRCDLVID", "SRCROW"]


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


IN_SCHEMA = {"USUBJID": pl.String, "PARAMCD": pl.String, "AVISIT": pl.String, "AWTARGET": pl.Int64,
             "ADY": pl.Int64, "AVAL": pl.Float64, "SRCDLVID": pl.Int64, "SRCROW": pl.Int64}  # fmt: skip

CASES = [
    # USUBJID, PARAMCD, AVISIT, AWTARGET, ADY, AVAL, SRCDLVID, SRCROW, expected ANL01FL
    # closest to the target day wins
    ("S1", "NFLS", "M1", 29, 27, 1.0, 1, 1, None),
    ("S1", "NFLS", "M1", 29, 30, 2.0, 1, 2, "Y"),
    # other visit and other parameter of the same subject are separate groups
    ("S1", "NFLS", "M3", 85, 80, 3.0, 1, 3, "Y"),
    ("S1", "CD4CNT", "M1", 29, 27, 700.0, 1, 4, "Y"),
    # equal distance either side of the target: the later day wins (before delivery and row)
    ("S2", "NFLS", "M1", 29, 27, 1.0, 2, 5, None),
    ("S2", "NFLS", "M1", 29, 31, 2.0, 1, 6, "Y"),
    # closeness wins before the later day and the later delivery
    ("S6", "NFLS", "M1", 29, 28, 1.0, 2, 1, "Y"),
    ("S6", "NFLS", "M1", 29, 34, 2.0, 3, 1, None),
    # same day: the later delivery wins, then the later row
    ("S3", "NFLS", "M1", 29, 29, 1.0, 1, 9, None),
    ("S3", "NFLS", "M1", 29, 29, 2.0, 2, 1, "Y"),
    ("S4", "NFLS", "M1", 29, 29, 1.0, 1, 4, None),
    ("S4", "NFLS", "M1", 29, 29, 2.0, 1, 9, "Y"),
    # a missing value is never the analysis record, even on target
    ("S5", "NFLS", "M1", 29, 29, None, 1, 10, None),
    ("S5", "NFLS", "M1", 29, 33, 5.0, 1, 11, "Y"),
    # a record in no window is kept but never flagged
    ("S5", "NFLS", None, None, 40, 6.0, 1, 12, None),
]


def test_anl01fl_closest_to_target_then_later():
    data = frame(IN_SCHEMA, [c[:-1] for c in CASES])
    expected = frame({**IN_SCHEMA, "ANL01FL": pl.String}, CASES)
    actual = derive_var_anl01fl(data)
    assert_frame_equal(actual.sort(KEYS), expected.sort(KEYS))
    assert_frame_equal(derive_var_anl01fl(data.reverse()).sort(KEYS), expected.sort(KEYS))
