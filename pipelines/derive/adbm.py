"""ADBM: the BDS biomarker analysis dataset, built from the long core table and the subjects."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import polars as pl

from pipelines.derive.bds import (
    baseline_window,
    derive_var_ablfl,
    derive_var_anl01fl,
    derive_var_base,
    derive_var_chg,
    derive_var_pchg,
    derive_var_r2base,
    derive_var_trtp,
    derive_vars_avisit,
    derive_vars_blq,
    derive_vars_dt_dy,
    derive_vars_merged,
)
from pipelines.derive.checks import assert_columns

# Core (warehouse) column -> ADaM variable. Traceability: SRCTBL/SRCDLVID/SRCFILE/SRCROW
# name the core table, delivery, delivered file and row each record came from.
CORE_TO_ADAM: dict[str, str] = {
    "usubjid": "USUBJID",
    "paramcd": "PARAMCD",
    "param": "PARAM",
    "aval": "AVAL",
    "aval_unit": "AVALU",
    "visit_code": "VISIT",
    "sample_id": "SAMPLEID",
    "core_table": "SRCTBL",
    "delivery_id": "SRCDLVID",
    "file_name": "SRCFILE",
    "row_number": "SRCROW",
}
# Core columns consumed by the derivations and not kept under their own name.
CORE_SOURCE_COLUMNS: tuple[str, ...] = (
    "collection_date",
    "study_day",
    "reported_result",
    "blq_flag",
    "alq_flag",
    "lloq",
    "uloq",
)

ADBM_COLUMNS: tuple[str, ...] = (
    "STUDYID", "USUBJID", "SITEID", "TRTP", "TRTPN", "TRTA",
    "PARAMCD", "PARAM", "AVAL", "AVALU", "AVALC", "BLQFL", "ALQFL", "IMPUTFL", "IMPUTRL",
    "ADT", "ADY", "VISIT", "AVISIT", "AVISITN", "AWTARGET", "AWLO", "AWHI",
    "ABLFL", "BASE", "BASEC", "CHG", "PCHG", "R2BASE", "ANL01FL",
    "SAMPLEID", "SRCTBL", "SRCDLVID", "SRCFILE", "SRCROW",
)  # fmt: skip


def rename_core_to_adam(core: pl.DataFrame) -> pl.DataFrame:
    """Rename the core columns that have an ADaM name; source-only columns keep their core names."""
    assert_columns(core, [*CORE_TO_ADAM, *CORE_SOURCE_COLUMNS], "rename_core_to_adam")
    return core.rename(CORE_TO_ADAM).with_columns(
        pl.col("AVAL").cast(pl.Float64),
        pl.col("SRCDLVID").cast(pl.Int64),
        pl.col("SRCROW").cast(pl.Int64),
    )


def create_adbm(
    core: pl.DataFrame,
    subject: pl.DataFrame,
    visits: Sequence[Mapping[str, Any] | object],
    arms: Sequence[str | Mapping[str, Any] | object],
    imputation_rule_name: str,
    imputation_factor: float,
    studyid: str,
    baseline_day: int = 1,
    *,
    ratio_params: Collection[str],
) -> pl.DataFrame:
    """Build ADBM (one record per core value) with analysis visit, baseline and change from baseline.

    The baseline is the last value in the window of the visit containing ``baseline_day``, up to
    that day (:func:`baseline_window`). ``ratio_params``: the parameters given PCHG and R2BASE
    (``ratio_scale`` in the study definition); others, such as a z-score, keep CHG only. It has
    no default: a percent change of a z-score means nothing, and a caller must say which."""
    assert_columns(subject, ["usubjid", "siteid", "armcd", "arm"], "create_adbm (subject)")
    adam = rename_core_to_adam(core)
    earliest_day, _ = baseline_window(visits, baseline_day)
    return (
        adam.pipe(derive_vars_merged, subject, by_vars={"USUBJID": "usubjid"}, new_vars={"siteid": "SITEID"})
        .pipe(derive_vars_dt_dy)
        .pipe(derive_vars_avisit, visits)
        .pipe(derive_vars_blq, imputation_rule_name, imputation_factor)
        .pipe(derive_var_ablfl, baseline_day, earliest_day=earliest_day)
        .pipe(derive_var_base)
        .pipe(derive_var_base, source_var="AVALC", new_var="BASEC")
        .pipe(derive_var_chg, baseline_day)
        .pipe(derive_var_pchg, ratio_params)
        .pipe(derive_var_r2base, baseline_day, ratio_params)
        .pipe(derive_var_anl01fl)
        .pipe(derive_var_trtp, subject, arms)
        .with_columns(pl.lit(studyid, dtype=pl.String).alias("STUDYID"))
        .select(ADBM_COLUMNS)
    )
