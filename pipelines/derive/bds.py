"""BDS derivations (one record per subject x parameter x measurement), admiral style.

Each function takes the dataset first, asserts the columns it needs, adds its variable(s)
and drops its temporary columns; row order is not its business. ADaM variables are named
in upper case (USUBJID, PARAMCD, AVAL, ADY, ...). Source columns that only feed a
derivation keep their core (lower-case) names and are named by keyword arguments.
Every rule (windows, imputation, baseline day, arm order) arrives as an argument.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import polars as pl

from pipelines.derive.checks import assert_columns, assert_new_columns, field_of, tmp

BY_SUBJECT_PARAM: tuple[str, ...] = ("USUBJID", "PARAMCD")
# Traceability columns used to break ties deterministically (later delivery, later row wins).
TIEBREAK: tuple[str, ...] = ("SRCDLVID", "SRCROW")
FLAG_Y = "Y"


def _flag(mask: pl.Series | pl.Expr) -> pl.Expr:
    """'Y' where mask is true, null elsewhere."""
    condition = pl.lit(mask) if isinstance(mask, pl.Series) else mask
    return pl.when(condition.fill_null(False)).then(pl.lit(FLAG_Y)).otherwise(pl.lit(None, dtype=pl.String))


def _last_in_group(
    df: pl.DataFrame, by: Sequence[str], order: Sequence[str], candidate: pl.Expr
) -> pl.Series:
    """Boolean mask: among candidate rows, the last one per `by` group when sorted by `order`."""
    row = tmp("row")
    indexed = df.with_row_index(row)
    chosen = (
        indexed.filter(candidate.fill_null(False))
        .sort([*by, *order], nulls_last=False, maintain_order=True)
        .group_by(list(by), maintain_order=True)
        .agg(pl.col(row).last())
        .get_column(row)
    )
    return indexed.get_column(row).is_in(chosen.implode())


def _post_baseline(baseline_day: int) -> pl.Expr:
    return pl.col("ADY") > baseline_day


def _safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null when the denominator is 0 or null."""
    return pl.when(denominator.is_null() | (denominator == 0)).then(None).otherwise(numerator / denominator)


def derive_vars_merged(
    df: pl.DataFrame,
    dataset_add: pl.DataFrame,
    by_vars: Mapping[str, str],
    new_vars: Mapping[str, str],
    filter_add: pl.Expr | None = None,
) -> pl.DataFrame:
    """Add new_vars (add column -> new name) from dataset_add, matched on by_vars (df column -> add column)."""
    assert_columns(df, by_vars.keys(), "derive_vars_merged")
    assert_columns(dataset_add, [*by_vars.values(), *new_vars.keys()], "derive_vars_merged (dataset_add)")
    assert_new_columns(df, new_vars.values(), "derive_vars_merged")
    add = dataset_add if filter_add is None else dataset_add.filter(filter_add)
    add = add.select(
        *[pl.col(a).alias(d) for d, a in by_vars.items()],
        *[pl.col(a).alias(n) for a, n in new_vars.items()],
    )
    dupes = add.filter(pl.struct(list(by_vars)).is_duplicated())
    if dupes.height:
        keys = dupes.select(list(by_vars)).unique().head(5).rows()
        raise ValueError(f"derive_vars_merged: dataset_add has several rows per {', '.join(by_vars)}, e.g. {keys}")
    return df.join(add, on=list(by_vars), how="left", nulls_equal=False, coalesce=True)


def derive_vars_dt_dy(
    df: pl.DataFrame, date_var: str = "collection_date", day_var: str = "study_day"
) -> pl.DataFrame:
    """Add ADT (analysis date) and ADY (analysis relative day; day 1 = randomisation, no day 0)."""
    assert_columns(df, [date_var, day_var], "derive_vars_dt_dy")
    day_zero = df.filter(pl.col(day_var) == 0).height
    if day_zero:
        raise ValueError(f"derive_vars_dt_dy: {day_zero} row(s) with {day_var} = 0; study days have no day 0")
    return df.with_columns(
        pl.col(date_var).cast(pl.Date).alias("ADT"),
        pl.col(day_var).cast(pl.Int64).alias("ADY"),
    )


def assert_windows_disjoint(visits: Sequence[Mapping[str, Any] | object]) -> None:
    """Raise ValueError if a visit window is empty or two visit windows share a day."""
    windows = sorted(
        (int(field_of(v, "window_lo")), int(field_of(v, "window_hi")), str(field_of(v, "visit_code")))
        for v in visits
    )
    for lo, hi, code in windows:
        if lo > hi:
            raise ValueError(f"visit {code}: window_lo {lo} is after window_hi {hi}")
    for (lo_a, hi_a, code_a), (lo_b, hi_b, code_b) in zip(windows, windows[1:]):
        if lo_b <= hi_a:
            raise ValueError(
                f"visit windows overlap: {code_a} (days {lo_a} to {hi_a}) and {code_b} (days {lo_b} to {hi_b})"
            )


def derive_vars_avisit(df: pl.DataFrame, visits: Sequence[Mapping[str, Any] | object]) -> pl.DataFrame:
    """Add AVISIT, AVISITN, AWTARGET, AWLO, AWHI from the visit window (inclusive) containing ADY."""
    assert_columns(df, ["ADY"], "derive_vars_avisit")
    assert_windows_disjoint(visits)
    targets = {
        "AVISIT": ("visit_code", pl.String),
        "AVISITN": ("visit_num", pl.Int64),
        "AWTARGET": ("study_day", pl.Int64),
        "AWLO": ("window_lo", pl.Int64),
        "AWHI": ("window_hi", pl.Int64),
    }
    exprs = []
    for name, (field, dtype) in targets.items():
        expr = pl.lit(None, dtype=dtype)
        for v in visits:
            inside = pl.col("ADY").is_between(int(field_of(v, "window_lo")), int(field_of(v, "window_hi")))
            expr = pl.when(inside).then(pl.lit(field_of(v, field), dtype=dtype)).otherwise(expr)
        exprs.append(expr.alias(name))
    return df.with_columns(exprs)


def derive_vars_blq(
    df: pl.DataFrame,
    imputation_rule_name: str,
    factor: float,
    alq_imputation_rule_name: str = "ULOQ",
    result_var: str = "reported_result",
    blq_var: str = "blq_flag",
    alq_var: str = "alq_flag",
    lloq_var: str = "lloq",
    uloq_var: str = "uloq",
) -> pl.DataFrame:
    """Add AVALC, BLQFL, ALQFL, IMPUTFL, IMPUTRL; impute AVAL below LLOQ (lloq * factor) and above ULOQ (uloq).

    AVALC is the analysis value as text, in AVAL's unit: ``<LLOQ`` / ``>ULOQ`` for a censored
    result (the lab's own text when its limit is unknown), else AVAL. The lab's text in the lab's
    unit stays in the source table (a converted 0.0680 ng/mL is AVAL 68.0, AVALC "68.0" pg/mL).
    """
    assert_columns(df, ["AVAL", result_var, blq_var, alq_var, lloq_var, uloq_var], "derive_vars_blq")
    blq = pl.col(blq_var).cast(pl.Boolean).fill_null(False)
    alq = pl.col(alq_var).cast(pl.Boolean).fill_null(False)
    both = df.filter(blq & alq).height
    if both:
        raise ValueError(f"derive_vars_blq: {both} row(s) flagged both below LLOQ and above ULOQ")
    lloq = pl.col(lloq_var).cast(pl.Float64)
    uloq = pl.col(uloq_var).cast(pl.Float64)
    # A censored row without its limit cannot be imputed: it keeps its (null) AVAL and no IMPUTFL.
    imputed_blq = blq & lloq.is_not_null()
    imputed_alq = alq & uloq.is_not_null()
    return df.with_columns(
        pl.when(imputed_blq)
        .then(pl.lit("<") + lloq.cast(pl.String))
        .when(imputed_alq)
        .then(pl.lit(">") + uloq.cast(pl.String))
        .when(blq | alq)
        .then(pl.col(result_var).cast(pl.String))
        .otherwise(pl.col("AVAL").cast(pl.Float64).cast(pl.String))
        .alias("AVALC"),
        _flag(blq).alias("BLQFL"),
        _flag(alq).alias("ALQFL"),
        pl.when(imputed_blq)
        .then(lloq * factor)
        .when(imputed_alq)
        .then(uloq)
        .otherwise(pl.col("AVAL").cast(pl.Float64))
        .alias("AVAL"),
        _flag(imputed_blq | imputed_alq).alias("IMPUTFL"),
        pl.when(imputed_blq)
        .then(pl.lit(imputation_rule_name))
        .when(imputed_alq)
        .then(pl.lit(alq_imputation_rule_name))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("IMPUTRL"),
    )


def baseline_window(visits: Sequence[Mapping[str, Any] | object], baseline_day: int = 1) -> tuple[int, int]:
    """The days a baseline may come from: the window of the visit containing ``baseline_day``,
    up to that day (BASELINE, days -14 to 1: not a screening value from before the run-in)."""
    for v in visits:
        lo, hi = int(field_of(v, "window_lo")), int(field_of(v, "window_hi"))
        if lo <= baseline_day <= hi:
            return lo, baseline_day
    raise ValueError(f"no visit window contains the baseline day {baseline_day}")


def derive_var_ablfl(
    df: pl.DataFrame,
    baseline_day: int = 1,
    by_vars: Sequence[str] = BY_SUBJECT_PARAM,
    tiebreak: Sequence[str] = TIEBREAK,
    earliest_day: int | None = None,
    value_var: str | None = "AVAL",
) -> pl.DataFrame:
    """Add ABLFL = 'Y' on the last record with a value (``value_var``; None: every record, such
    as samples) with ADY <= baseline_day per subject x parameter, and ADY >= earliest_day when
    given (see :func:`baseline_window`)."""
    assert_columns(df, [*by_vars, *([value_var] if value_var else []), "ADY", *tiebreak], "derive_var_ablfl")
    assert_new_columns(df, ["ABLFL"], "derive_var_ablfl")
    candidate = pl.col("ADY") <= baseline_day
    if value_var:
        candidate = candidate & pl.col(value_var).is_not_null()
    if earliest_day is not None:
        candidate = candidate & (pl.col("ADY") >= earliest_day)
    mask = _last_in_group(df, by_vars, ["ADY", *tiebreak], candidate)
    return df.with_columns(_flag(mask).alias("ABLFL"))


def derive_var_base(
    df: pl.DataFrame, by_vars: Sequence[str] = BY_SUBJECT_PARAM, source_var: str = "AVAL", new_var: str = "BASE"
) -> pl.DataFrame:
    """Add new_var = source_var of the ABLFL = 'Y' record, on every record of the subject x
    parameter: BASE from AVAL, or BASEC from AVALC (which shows a censored baseline, "<3.0")."""
    assert_columns(df, [*by_vars, source_var, "ABLFL"], "derive_var_base")
    assert_new_columns(df, [new_var], "derive_var_base")
    is_base = pl.col("ABLFL") == FLAG_Y
    several = df.filter(is_base).filter(pl.struct(list(by_vars)).is_duplicated())
    if several.height:
        raise ValueError(f"derive_var_base: more than one ABLFL = 'Y' record per {', '.join(by_vars)}")
    value = pl.col(source_var).cast(pl.Float64) if df.schema[source_var].is_numeric() else pl.col(source_var)
    return df.with_columns(value.filter(is_base.fill_null(False)).first().over(list(by_vars)).alias(new_var))


# Float noise (42.3 - 0.2 is 42.099999999999994, 0.3 / 0.1 is 2.9999999999999996) breaks analysts'
# equality tests. It is below 1e-10 for any result under 100,000 and no laboratory reports 9
# decimals, so rounding a change or ratio to 9 decimals drops the noise and nothing measured.
CHANGE_DECIMALS = 9


def derive_var_chg(df: pl.DataFrame, baseline_day: int = 1) -> pl.DataFrame:
    """Add CHG = AVAL - BASE for post-baseline records (ADY > baseline_day), null otherwise."""
    assert_columns(df, ["AVAL", "BASE", "ADY"], "derive_var_chg")
    return df.with_columns(
        pl.when(_post_baseline(baseline_day)).then(pl.col("AVAL") - pl.col("BASE")).otherwise(None)
        .cast(pl.Float64)
        .round(CHANGE_DECIMALS)
        .alias("CHG")
    )


def _on_ratio_scale(ratio_params: Collection[str] | None) -> pl.Expr:
    """Records of parameters whose ratios mean something (all when ``ratio_params`` is None)."""
    return pl.lit(True) if ratio_params is None else pl.col("PARAMCD").is_in(list(ratio_params))


def derive_var_pchg(df: pl.DataFrame, ratio_params: Collection[str] | None = None) -> pl.DataFrame:
    """Add PCHG = 100 * CHG / BASE, null when BASE is 0 or null, and for parameters not in
    ``ratio_params`` (a z-score's or a log value's percent change means nothing)."""
    assert_columns(df, ["CHG", "BASE"] + (["PARAMCD"] if ratio_params is not None else []), "derive_var_pchg")
    return df.with_columns(
        pl.when(_on_ratio_scale(ratio_params))
        .then(_safe_ratio(100 * pl.col("CHG"), pl.col("BASE")))
        .otherwise(None)
        .cast(pl.Float64)
        .round(CHANGE_DECIMALS)
        .alias("PCHG")
    )


def derive_var_r2base(
    df: pl.DataFrame, baseline_day: int = 1, ratio_params: Collection[str] | None = None
) -> pl.DataFrame:
    """Add R2BASE = AVAL / BASE for post-baseline records, null when BASE is 0 or null, and for
    parameters not in ``ratio_params``."""
    assert_columns(df, ["AVAL", "BASE", "ADY"] + (["PARAMCD"] if ratio_params is not None else []), "derive_var_r2base")
    return df.with_columns(
        pl.when(_post_baseline(baseline_day) & _on_ratio_scale(ratio_params))
        .then(_safe_ratio(pl.col("AVAL"), pl.col("BASE")))
        .otherwise(None)
        .cast(pl.Float64)
        .round(CHANGE_DECIMALS)
        .alias("R2BASE")
    )


def derive_var_anl01fl(
    df: pl.DataFrame,
    by_vars: Sequence[str] = (*BY_SUBJECT_PARAM, "AVISIT"),
    tiebreak: Sequence[str] = TIEBREAK,
    value_var: str | None = "AVAL",
) -> pl.DataFrame:
    """Add ANL01FL = 'Y' on the record closest to AWTARGET per subject x parameter x AVISIT (ties:
    later), among records with a value (``value_var``; None: every record, such as samples)."""
    assert_columns(df, [*by_vars, *([value_var] if value_var else []), "ADY", "AWTARGET", *tiebreak],
                   "derive_var_anl01fl")
    assert_new_columns(df, ["ANL01FL"], "derive_var_anl01fl")
    closeness = tmp("closeness")
    work = df.with_columns((-(pl.col("ADY") - pl.col("AWTARGET")).abs()).alias(closeness))
    candidate = pl.col("AVISIT").is_not_null() & pl.col("ADY").is_not_null()
    if value_var:
        candidate = candidate & pl.col(value_var).is_not_null()
    mask = _last_in_group(work, by_vars, [closeness, "ADY", *tiebreak], candidate)
    return df.with_columns(_flag(mask).alias("ANL01FL"))


def arm_numbers(arms: Sequence[str | Mapping[str, Any] | object]) -> dict[str, int]:
    """Map each arm code to its 1-based position in `arms` (codes, or dicts/objects with armcd)."""
    codes = [a if isinstance(a, str) else str(field_of(a, "armcd")) for a in arms]
    if len(set(codes)) != len(codes):
        raise ValueError(f"arm codes repeat in {codes}")
    return {code: i for i, code in enumerate(codes, start=1)}


def derive_var_trtp(
    df: pl.DataFrame,
    subject: pl.DataFrame,
    arms: Sequence[str | Mapping[str, Any] | object],
) -> pl.DataFrame:
    """Add TRTP, TRTA (= TRTP) and TRTPN (position of the subject's armcd in `arms`) from the subject table."""
    assert_columns(df, ["USUBJID"], "derive_var_trtp")
    assert_columns(subject, ["usubjid", "armcd", "arm"], "derive_var_trtp (subject)")
    numbers = arm_numbers(arms)
    unknown = sorted(set(subject.get_column("armcd").drop_nulls().to_list()) - set(numbers))
    if unknown:
        raise ValueError(f"derive_var_trtp: arm code(s) {unknown} are not in the arms given {list(numbers)}")
    armcd = tmp("armcd")
    out = derive_vars_merged(df, subject, {"USUBJID": "usubjid"}, {"arm": "TRTP", "armcd": armcd})
    return out.with_columns(
        pl.col("TRTP").alias("TRTA"),
        pl.col(armcd).replace_strict(numbers, default=None, return_dtype=pl.Int64).alias("TRTPN"),
    ).drop(armcd)
