"""ADSL: one record per subject, with strata, treatment, baseline neurofilaments and responder flag."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import polars as pl

from pipelines.derive.bds import FLAG_Y, derive_var_trtp, derive_vars_merged
from pipelines.derive.checks import assert_columns, assert_new_columns, tmp

RESPONDER_RULE_KEYS: tuple[str, ...] = ("paramcd", "visit_code", "r2base_threshold")
# ARMCD and ARM of a subject who entered the run-in but was never randomised (SDTMIG's code)
NOT_ASSIGNED: tuple[str, str] = ("NOTASSGN", "Not Assigned")

ADSL_COLUMNS: tuple[str, ...] = (
    "STUDYID", "USUBJID", "SUBJID", "SITEID", "COUNTRY", "ONSET", "SEX", "AGE", "AGEU",
    "RANDDT", "STRATAR", "STRAT1R", "STRAT2R", "ARMCD", "ARM", "ACTARMCD", "ACTARM",
    "TRT01P", "TRT01A", "TRT01PN", "ITTFL",
    "DTHDT", "DTHFL", "WDDT", "WDREAS", "BNFLS", "BPNFHC", "PNFHSTR", "TRRESPFL",
)  # fmt: skip


@overload
def compute_pnfh_stratum(values: pl.Expr, cutpoint: float, labels: tuple[str, str] = ...) -> pl.Expr: ...
@overload
def compute_pnfh_stratum(values: pl.Series, cutpoint: float, labels: tuple[str, str] = ...) -> pl.Series: ...
def compute_pnfh_stratum(
    values: pl.Expr | pl.Series, cutpoint: float, labels: tuple[str, str] = ("LOW", "HIGH")
) -> pl.Expr | pl.Series:
    """pNfH stratum: labels[0] when value <= cutpoint, labels[1] when above, null when missing."""
    low, high = labels
    v = values.cast(pl.Float64) if isinstance(values, pl.Expr) else pl.col(values.name).cast(pl.Float64)
    expr = (
        pl.when(v.is_null() | v.is_nan())
        .then(pl.lit(None, dtype=pl.String))
        .when(v <= cutpoint)
        .then(pl.lit(low))
        .otherwise(pl.lit(high))
    )
    if isinstance(values, pl.Expr):
        return expr
    return values.to_frame().select(expr.alias(values.name)).to_series()


def derive_var_responder(
    adsl: pl.DataFrame,
    adbm: pl.DataFrame,
    paramcd: str,
    visit_code: str,
    threshold: float,
    flag_name: str = "TRRESPFL",
) -> pl.DataFrame:
    """Add flag_name: 'Y' if R2BASE of the ANL01FL paramcd record at visit_code >= threshold, 'N' if below."""
    assert_columns(adsl, ["USUBJID"], "derive_var_responder (adsl)")
    assert_columns(adbm, ["USUBJID", "PARAMCD", "AVISIT", "ANL01FL", "R2BASE"], "derive_var_responder (adbm)")
    assert_new_columns(adsl, [flag_name], "derive_var_responder")
    ratio = tmp("r2base")
    merged = derive_vars_merged(
        adsl,
        adbm,
        by_vars={"USUBJID": "USUBJID"},
        new_vars={"R2BASE": ratio},
        filter_add=(pl.col("PARAMCD") == paramcd) & (pl.col("AVISIT") == visit_code) & (pl.col("ANL01FL") == FLAG_Y),
    )
    return merged.with_columns(
        pl.when(pl.col(ratio).is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col(ratio) >= threshold)
        .then(pl.lit(FLAG_Y))
        .otherwise(pl.lit("N"))
        .alias(flag_name)
    ).drop(ratio)


def derive_var_baseline_of(adsl: pl.DataFrame, adbm: pl.DataFrame, paramcd: str, new_var: str) -> pl.DataFrame:
    """Add new_var = AVAL of the subject's ABLFL = 'Y' record of paramcd (null if none)."""
    assert_columns(adsl, ["USUBJID"], "derive_var_baseline_of (adsl)")
    assert_columns(adbm, ["USUBJID", "PARAMCD", "ABLFL", "AVAL"], "derive_var_baseline_of (adbm)")
    return derive_vars_merged(
        adsl,
        adbm,
        by_vars={"USUBJID": "USUBJID"},
        new_vars={"AVAL": new_var},
        filter_add=(pl.col("PARAMCD") == paramcd) & (pl.col("ABLFL") == FLAG_Y),
    )


def derive_var_pnfh_stratum(
    adsl: pl.DataFrame,
    adbm: pl.DataFrame,
    paramcd: str,
    cutpoint: float,
    blq_factor: float,
    new_var: str = "PNFHSTR",
) -> pl.DataFrame:
    """Add new_var, the pNfH stratum of the subject's baseline (ABLFL = 'Y') record of paramcd.

    A censored baseline is placed only where its limit places it for certain: above a ULOQ
    (AVAL is the limit) is HIGH when the limit is at or above the cut-point; below an LLOQ
    (AVAL is the limit times ``blq_factor``) is LOW when the limit is at or below it. Otherwise
    the stratum is unknown (null), never the side the imputed value happens to fall on.
    """
    assert_columns(adbm, ["USUBJID", "PARAMCD", "ABLFL", "AVAL", "BLQFL", "ALQFL"], "derive_var_pnfh_stratum (adbm)")
    value, below, above = tmp("aval"), tmp("blq"), tmp("alq")
    merged = derive_vars_merged(
        adsl,
        adbm,
        by_vars={"USUBJID": "USUBJID"},
        new_vars={"AVAL": value, "BLQFL": below, "ALQFL": above},
        filter_add=(pl.col("PARAMCD") == paramcd) & (pl.col("ABLFL") == FLAG_Y),
    )
    low, high = pl.lit("LOW"), pl.lit("HIGH")
    unknown = pl.lit(None, dtype=pl.String)
    return merged.with_columns(
        pl.when(pl.col(above) == FLAG_Y)
        .then(pl.when(pl.col(value) >= cutpoint).then(high).otherwise(unknown))
        .when(pl.col(below) == FLAG_Y)
        .then(pl.when(pl.col(value) / blq_factor <= cutpoint).then(low).otherwise(unknown))
        .otherwise(compute_pnfh_stratum(pl.col(value), cutpoint))
        .alias(new_var)
    ).drop(value, below, above)


def create_adsl(
    subject: pl.DataFrame,
    adbm: pl.DataFrame,
    studyid: str,
    pnfh_paramcd: str,
    nfl_paramcd: str,
    cutpoint: float,
    responder_rule: Mapping[str, Any],
    arms: Sequence[str | Mapping[str, Any] | object],
    blq_factor: float,
    age_unit: str = "YEARS",
) -> pl.DataFrame:
    """Build ADSL: one record per subject of the subject table (``blq_factor``: the ADBM
    imputation factor below the LLOQ, to read a censored baseline's limit back)."""
    required = [
        "usubjid", "siteid", "country", "sex", "age", "onset", "stratum", "randomisation_date",
        "randomised", "death_date", "withdrawal_date", "withdrawal_reason", "armcd", "arm",
    ]  # fmt: skip
    assert_columns(subject, required, "create_adsl (subject)")
    missing_keys = [k for k in RESPONDER_RULE_KEYS if k not in responder_rule]
    if missing_keys:
        raise ValueError(f"create_adsl: responder_rule lacks {', '.join(missing_keys)}")
    if subject.get_column("usubjid").is_duplicated().any():
        raise ValueError("create_adsl: subject has several rows per usubjid")
    armcd, arm = pl.col("armcd").fill_null(NOT_ASSIGNED[0]), pl.col("arm").fill_null(NOT_ASSIGNED[1])
    adsl = subject.select(
        pl.lit(studyid, dtype=pl.String).alias("STUDYID"),
        pl.col("usubjid").alias("USUBJID"),
        # unique in the study (SDTMIG), as the site's number is not: USUBJID without the study
        pl.col("usubjid").str.strip_prefix(f"{studyid}-").alias("SUBJID"),
        pl.col("siteid").alias("SITEID"),
        pl.col("country").alias("COUNTRY"),
        pl.col("onset").alias("ONSET"),
        pl.col("sex").alias("SEX"),
        pl.col("age").cast(pl.Int64).alias("AGE"),
        pl.lit(age_unit, dtype=pl.String).alias("AGEU"),
        pl.col("randomisation_date").cast(pl.Date).alias("RANDDT"),
        pl.col("stratum").alias("STRATAR"),
        pl.col("country").alias("STRAT1R"),
        pl.col("onset").alias("STRAT2R"),
        pl.when(pl.col("randomised").fill_null(False)).then(pl.lit(FLAG_Y)).otherwise(pl.lit("N")).alias("ITTFL"),
        pl.col("death_date").cast(pl.Date).alias("DTHDT"),
        pl.when(pl.col("death_date").is_not_null()).then(pl.lit(FLAG_Y)).otherwise(pl.lit(None, dtype=pl.String))
        .alias("DTHFL"),
        pl.col("withdrawal_date").cast(pl.Date).alias("WDDT"),
        pl.col("withdrawal_reason").alias("WDREAS"),
        # arm as randomised (masked in a blinded build), NOTASSGN for a subject never randomised;
        # no exposure data reaches the warehouse, so the actual arm is the randomised one, as
        # TRT01A is TRT01P
        armcd.alias("ARMCD"),
        arm.alias("ARM"),
        armcd.alias("ACTARMCD"),
        arm.alias("ACTARM"),
    )
    return (
        adsl.pipe(derive_var_trtp, subject, arms)
        .rename({"TRTP": "TRT01P", "TRTA": "TRT01A", "TRTPN": "TRT01PN"})
        .pipe(derive_var_baseline_of, adbm, nfl_paramcd, "BNFLS")
        .pipe(derive_var_baseline_of, adbm, pnfh_paramcd, "BPNFHC")
        .pipe(derive_var_pnfh_stratum, adbm, pnfh_paramcd, cutpoint, blq_factor)
        .pipe(
            derive_var_responder,
            adbm,
            responder_rule["paramcd"],
            responder_rule["visit_code"],
            float(responder_rule["r2base_threshold"]),
        )
        .select(ADSL_COLUMNS)
    )
