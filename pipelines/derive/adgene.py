"""ADGENE's sample part: treatment and analysis visit of each RNA sample, from the sample itself.

Gene rows take their context from their sample, not from ADBM's per-sample RNA-seq records, so
a sample whose summary is missing or held back still reaches ADGENE. The visit and treatment
come from the same derivations as ADBM, so a sample in both carries the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from pipelines.derive.bds import (
    baseline_window,
    derive_var_ablfl,
    derive_var_anl01fl,
    derive_var_trtp,
    derive_vars_avisit,
    derive_vars_dt_dy,
    derive_vars_merged,
)
from pipelines.derive.checks import assert_columns, tmp

ADGENE_SAMPLE_COLUMNS: tuple[str, ...] = (
    "STUDYID", "USUBJID", "SITEID", "TRTP", "TRTPN", "TRTA",
    "SAMPLEID", "ADT", "ADY", "VISIT", "AVISIT", "AVISITN", "ABLFL", "ANL01FL",
)  # fmt: skip


def create_adgene_samples(
    samples: pl.DataFrame,
    subject: pl.DataFrame,
    visits: Sequence[Mapping[str, Any] | object],
    arms: Sequence[str | Mapping[str, Any] | object],
    studyid: str,
    baseline_day: int = 1,
) -> pl.DataFrame:
    """One record per RNA sample (core.sample rows) with treatment and analysis visit; ANL01FL
    marks one sample per subject and analysis visit, the one closest to the target day (then the
    later), as ADBM's records are chosen; two samples collected the same day are told apart by
    the greater sample id, where ADBM's records are by the later delivery and row, so there the
    two tables may pick different samples. ABLFL marks the subject's baseline RNA sample: the
    last one in the baseline window (:func:`baseline_window`) with gene rows (``gene_rows`` > 0:
    a tube collected and never sequenced is not a baseline), whose gene values are ADGENE's
    baselines."""
    assert_columns(samples, ["usubjid", "sample_id", "visit_code", "collection_date", "study_day", "gene_rows"],
                   "create_adgene_samples")
    earliest_day, _ = baseline_window(visits, baseline_day)
    sequenced = tmp("sequenced")
    return (
        samples.rename({"usubjid": "USUBJID", "sample_id": "SAMPLEID", "visit_code": "VISIT"})
        .with_columns(pl.when(pl.col("gene_rows") > 0).then(True).alias(sequenced))
        .pipe(derive_vars_merged, subject, by_vars={"USUBJID": "usubjid"}, new_vars={"siteid": "SITEID"})
        .pipe(derive_vars_dt_dy)
        .pipe(derive_vars_avisit, visits)
        .pipe(derive_var_ablfl, baseline_day, by_vars=("USUBJID",), tiebreak=("SAMPLEID",),
              earliest_day=earliest_day, value_var=sequenced)
        .pipe(derive_var_anl01fl, by_vars=("USUBJID", "AVISIT"), tiebreak=("SAMPLEID",), value_var=None)
        .pipe(derive_var_trtp, subject, arms)
        .with_columns(pl.lit(studyid, dtype=pl.String).alias("STUDYID"))
        .select(ADGENE_SAMPLE_COLUMNS)
    )
