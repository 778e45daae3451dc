"""Bad input, fed through the real build: every refused file and every held-back row is
recorded with a readable reason, every delivery balances, and the valid rows around them load
unchanged. Nothing delivered is lost, nothing invalid reaches ``core``, and no value of a file
that carries personal data is stored or logged anywhere.

Two hand-written landing zones are built once each (module-scoped): one with refused files in
every family folder and bad rows of every kind, one with files carrying personal data.
``mirocals check`` is held against the verdicts of the first build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import sys
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

import pipelines.cli as cli
from pipelines.build import build_warehouse
from pipelines.study import load_contracts
from pipelines.warehouse import digest_key_file, work_file
from tests.conftest import Built
from tests.stored_text import columns_containing, warehouse_text
from tests.conftest import run_build
from tests.landing import IL2, PBO, RANDOMISED, RUNIN_ONLY, nf, sample, subject, treg, write_delivery

DEAD = "MIROCALS-FR02-0001"       # died on study day 100
WITHDRAWN = "MIROCALS-FR02-0002"  # withdrew on study day 60
DEATH_DAY = 100
WITHDRAWAL_DAY = 60
CONSENT = RANDOMISED - dt.timedelta(days=130)  # tests.landing.subject's consent date
CYRILLIC_ES = "\u0421"  # looks exactly like a Latin 'S'
FUTURE = dt.datetime(2099, 1, 1, 9)


def study_date(study_day: int) -> dt.date:
    """Calendar date of a study day (day 1 = randomisation, no day 0)."""
    return RANDOMISED + dt.timedelta(days=study_day - 1 if study_day > 0 else study_day)


# ---------------------------------------------------------------------------------------------
# Landing zone 1: refused files and bad rows
# ---------------------------------------------------------------------------------------------

# sample id -> (subject, visit, matrix, study day of collection)
MANIFEST: dict[str, tuple[str, str, str, int]] = {
    "SWB01": (IL2, "BASELINE", "WHOLE_BLOOD", 1),
    "SWB02": (IL2, "M3", "WHOLE_BLOOD", 85),
    "SWB03": (PBO, "BASELINE", "WHOLE_BLOOD", -3),
    "SWB04": (PBO, "M3", "WHOLE_BLOOD", 90),
    "SWB05": (IL2, "M1", "WHOLE_BLOOD", 29),
    "SWB06": (IL2, "M2", "WHOLE_BLOOD", 57),
    "SWB07": (IL2, "M6", "WHOLE_BLOOD", 169),
    "SWB08": (IL2, "M9", "WHOLE_BLOOD", 253),
    "SWB09": (IL2, "M12", "WHOLE_BLOOD", 337),
    "SWB10": (PBO, "M1", "WHOLE_BLOOD", 29),
    "SWB11": (PBO, "M2", "WHOLE_BLOOD", 57),
    "SWB12": (PBO, "M6", "WHOLE_BLOOD", 169),
    "SWB13": (PBO, "M9", "WHOLE_BLOOD", 253),
    "SWB14": (IL2, "M15", "WHOLE_BLOOD", 421),
    "SWB15": (PBO, "M12", "WHOLE_BLOOD", 337),
    "SWB16": (PBO, "M15", "WHOLE_BLOOD", 421),
    "SWB17": (PBO, "M6", "WHOLE_BLOOD", 169),
    "SWB18": (IL2, "M9", "WHOLE_BLOOD", 253),
    "SWB19": (PBO, "M9", "WHOLE_BLOOD", 253),
    "SWB20": (IL2, "M9", "WHOLE_BLOOD", 253),
    "SWB21": (PBO, "M9", "WHOLE_BLOOD", 253),
    "SWB22": (IL2, "M12", "WHOLE_BLOOD", 337),
    # samples whose collection cannot be used: held back with every result measured on them
    "SRUNIN": (RUNIN_ONLY, "SCREEN", "WHOLE_BLOOD", -90),
    "SDEAD": (DEAD, "M6", "WHOLE_BLOOD", 169),
    "SWDRAW": (WITHDRAWN, "M3", "WHOLE_BLOOD", 85),
    "SWINDOW": (IL2, "M3", "WHOLE_BLOOD", 120),
    "SCONSENT": (IL2, "SCREEN", "WHOLE_BLOOD", -140),
    "SFUTURE": (IL2, "M18", "WHOLE_BLOOD", 505),  # collection date replaced by FUTURE
    "SSERUM": (PBO, "BASELINE", "SERUM", -3),     # serum sent to flow cytometry
    # serum for neurofilament
    "SNV01": (IL2, "BASELINE", "SERUM", 1),
    "SNV02": (IL2, "M1", "SERUM", 29),
    "SNU01": (IL2, "M2", "SERUM", 57),
    "SNX01": (PBO, "M1", "SERUM", 29),
    "SNX02": (PBO, "M2", "SERUM", 57),
    "SNX03": (PBO, "M3", "SERUM", 85),
    "SNX04": (PBO, "M6", "SERUM", 169),
    "SNX05": (PBO, "M9", "SERUM", 253),
    "SNX06": (PBO, "M12", "SERUM", 337),
    "SNC01": (IL2, "M3", "SERUM", 85),
    "SND01": (IL2, "M6", "SERUM", 169),
    "SNK01": (IL2, "M9", "SERUM", 253),
    "SNL01": (IL2, "M12", "SERUM", 337),
    "SNL02": (IL2, "M15", "SERUM", 421),
    **{f"SNL{i:02d}": (PBO, "M15", "SERUM", 421) for i in range(3, 25)},
    # PAXgene RNA
    "SRN01": (IL2, "BASELINE", "PAXGENE_RNA", 1),
    "SRN02": (PBO, "BASELINE", "PAXGENE_RNA", -3),
    "SRN03": (IL2, "M3", "PAXGENE_RNA", 85),
    "SRN04": (PBO, "M3", "PAXGENE_RNA", 85),
    "SRN05": (PBO, "BASELINE", "PAXGENE_RNA", -3),
}
# Sample-level faults: the manifest row is held back, and so is every result on the sample.
SAMPLE_FAULTS = {
    "SRUNIN": ("subject_not_randomised", f"subject {RUNIN_ONLY} entered the run-in but was never randomised"),
    "SDEAD": ("collection_after_death", f"collection date {study_date(169)} is after death on {study_date(DEATH_DAY)}"),
    "SWDRAW": ("collection_after_withdrawal",
               f"collection date {study_date(85)} is after withdrawal on {study_date(WITHDRAWAL_DAY)}"),
    "SWINDOW": ("collection_out_of_window",
                f"collected on {study_date(120)} (study day 120), outside the M3 window (days 78 to 92)"),
    "SCONSENT": ("collection_before_consent", f"collection date {study_date(-140)} precedes consent on {CONSENT}"),
    "SFUTURE": ("collection_in_future", f"collection date {FUTURE.date()} is in the future"),
}

# Every declared spelling of a censored result (schemas/study.yaml censored_results), one sample
# each. Serum NfL: LLOQ 3 pg/mL, ULOQ 1500 pg/mL. Kept and flagged, never quarantined.
BELOW_LLOQ = ["<3.0", "< 3", " < 3 ", "<LLOQ", "< LOQ", "BLQ", "blq", "below LLOQ", "Below  LOQ", "<LLQ"]
ABOVE_ULOQ = [">1500", "> 1500.0", ">ULOQ", "> LOQ", "ALQ", "AQL", "above ULOQ", "Above LOQ", ">ULQ"]
CENSORED = {f"SNB{i:02d}": r for i, r in enumerate(BELOW_LLOQ, 1)} | {f"SNA{i:02d}": r for i, r in enumerate(ABOVE_ULOQ, 1)}
for _sample_id in CENSORED:
    MANIFEST[_sample_id] = (IL2 if _sample_id.startswith("SNB") else PBO, "BASELINE", "SERUM", 1)

MANIFEST_FILE = "reference/sample_manifest/manifest_export_20190101.parquet"
SUBJECTS_FILE = "reference/subjects/subjects_export_20190101.parquet"
TREG_FILE = "labs/treg/treg_batch01.parquet"
TREG_FILE_2 = "labs/treg/treg_batch02.parquet"
TREG_EXTRA_FILE = "labs/treg/treg_batch03_extra.parquet"
NF_FILE = "labs/neurofilament/nf_batch01.parquet"
NF_FILE_2 = "labs/neurofilament/nf_batch02.parquet"
TS_FILE = "labs/transcript_summary/ts_batch01.parquet"
TG_FILE = "labs/transcript_gene/tg_batch01.parquet"
EXTRA_COMMENT = "re-acquired on cytometer 2"
ODD_EXTRA_FILE = "labs/treg/treg_batch96_odd_extra_names.parquet"
UNRECOGNISED = ["labs/Treg/treg_batch60.parquet", "labs/cytokines/cyto_batch01.parquet", "treg_batch61.parquet"]


class Row:
    """One delivered row and what must become of it: loaded (``rule`` None) or held back with
    ``rule``, found by GX on ``column``, with ``reason`` in the readable reason."""

    def __init__(self, values: dict[str, Any], rule: str | None = None, column: str | None = None,
                 reason: str | tuple[str, ...] | None = None):
        self.values, self.rule, self.column = values, rule, column
        self.reason = (reason,) if isinstance(reason, str) else reason


def _treg(sample_id: str, cd4: float = 800.0, pct: float = 5.0, **overrides: Any) -> dict[str, Any]:
    return treg(sample_id, cd4=cd4, pct=pct, **overrides)


def _sample_fault(sample_id: str) -> Row:
    rule, reason = SAMPLE_FAULTS[sample_id]
    return Row(_treg(sample_id), rule, None, f"sample {sample_id}: {reason}")


TREG_ROWS: list[Row] = [
    Row(_treg("SWB01")),                                                                        # 1
    Row(_treg("SWB01"), "duplicate_row", None, "exact copy of row 1 of this delivery"),          # 2
    Row(_treg("SWB04", cd4=-650.0, treg_count=30.0), "cd4_count_in_range", "cd4_count",
        "cd4_count must lie in the plausible range (cells/uL): 50 to 5000 (delivered: -650.0)"),
    Row(_treg("SWB05", pct=0.0, treg_count=0.5), "treg_pct_cd4_in_range", "treg_pct_cd4",
        "treg_pct_cd4 must lie in the plausible range"),                                       # 4 zero
    Row(_treg("SWB06", cd4=math.nan, treg_count=40.0), "cd4_count_present", "cd4_count",
        "cd4_count must be present (delivered: missing or NaN)"),                                      # 5 NaN
    Row(_treg("SWB07", cd4=math.inf, treg_count=40.0), "cd4_count_in_range", "cd4_count", "(delivered: inf)"),
    Row(_treg("SWB08", treg_count=-math.inf), "treg_count_in_range", "treg_count",
        "treg_count must lie in the plausible range"),                                         # 7 -inf
    Row(_treg("SWB09", cd4=99999.0, treg_count=40.0), "cd4_count_in_range", "cd4_count", "(delivered: 99999.0)"),
    Row(_treg(" swb02 ", cd4=910.0, pct=6.0)),                                                  # 9 harmonised
    Row(_treg(CYRILLIC_ES + "WB03"), "sample_id_format", "sample_id", f"(delivered: {CYRILLIC_ES}WB03)"),
    Row(_treg("SWB99"), "sample_unknown", None, "sample SWB99 is not in the biobank manifest"),  # 11
    _sample_fault("SRUNIN"),                                                                    # 12
    _sample_fault("SDEAD"),                                                                     # 13
    _sample_fault("SWDRAW"),                                                                    # 14
    _sample_fault("SWINDOW"),                                                                   # 15
    _sample_fault("SCONSENT"),                                                                  # 16
    _sample_fault("SFUTURE"),                                                                   # 17
    Row(_treg("SWB10", cd4=700.0), "conflicting_values", None, "sample SWB10 has 2 different results in this delivery"),
    Row(_treg("SWB10", cd4=750.0), "conflicting_values", None, "sample SWB10 has 2 different results in this delivery"),
    Row(_treg("SWB11", cd4=600.0)),                                                             # 20 corrected later
    Row(_treg("SWB12", cd4=1234.5, pct=7.5)),                                                   # 21
    Row(_treg("SSERUM"), "matrix_mismatch", None, "sample SSERUM is SERUM, flow cytometry needs WHOLE_BLOOD"),
    Row(_treg("SWB16", panel_version=None), "panel_version_present", "panel_version", "panel_version must be present"),
    # same sample, same CD4 count, different %Treg (a treatment-revealing value that a blinded
    # build withholds): still two different results
    Row(_treg("SWB15", cd4=900.0, pct=4.0), "conflicting_values", None, "sample SWB15 has 2 different results"),
    Row(_treg("SWB15", cd4=900.0, pct=9.0), "conflicting_values", None, "sample SWB15 has 2 different results"),
    # another unit: a CD4 count in 10^9/L, %Treg as a fraction; below the floors, not loaded
    Row(_treg("SWB18", cd4=1.09, treg_count=1.0), "cd4_count_in_range", "cd4_count", "50 to 5000 (delivered: 1.09)"),
    Row(_treg("SWB19", pct=0.12, treg_count=40.0), "treg_pct_cd4_in_range", "treg_pct_cd4",
        "treg_pct_cd4 must lie in the plausible range"),
    Row(_treg("SWB20", acquisition_date=dt.date(2018, 1, 1)), "acquisition_before_collection", None,
        "acquired on 2018-01-01, before sample SWB20 was collected on 2018-09-19"),
    Row(_treg("SWB21", acquisition_date=dt.date(2031, 1, 1)), "acquisition_in_future", None,
        "acquisition date 2031-01-01 is in the future"),
    Row(_treg("SWB22", panel_version="   "), "panel_version_not_blank", "panel_version",
        "panel_version must not be blank (spaces only) (delivered: '   ')"),
]
TREG_2_ROWS = [Row(_treg("SWB11", cd4=640.0)), Row(_treg("SWB14", cd4=820.0, pct=4.0))]

NF_ROWS: list[Row] = [
    Row(nf("SNV01", "62.0")),                                                                    # 1
    Row(nf("SNV02", "0.084", unit="NG/ML", lloq=0.003, uloq=1.5)),                                # 2
    Row(nf("SNU01", "5.0", unit="mg/dL"), "unit_known", "unit", "(delivered: mg/dL)"),            # 3
    Row(nf("SNX01", "-5"), "result_readable", "result", "(delivered: -5)"),                      # 4 negative
    Row(nf("SNX02", "NaN"), "result_readable", "result", "(delivered: NaN)"),                    # 5
    Row(nf("SNX03", "inf"), "result_readable", "result", "(delivered: inf)"),                    # 6
    Row(nf("SNX04", "abc"), "result_readable", "result", "(delivered: abc)"),                    # 7
    Row(nf("SNX05", "0"), "implausible_value", None, "is outside the plausible range 0.1 to 20000"),       # 8
    Row(nf("SNX06", "999999"), "implausible_value", None, "999999 pg/mL = 999999.0 pg/mL is outside the plausible range"),
    Row(nf("SNC01", "40.1"), "conflicting_values", None, "sample SNC01 has 2 different NfL results in this delivery"),
    Row(nf("SNC01", "44.9"), "conflicting_values", None, "sample SNC01 has 2 different NfL results in this delivery"),
    Row(nf("SND01", "51.2")),                                                                    # 12
    Row(nf("SND01", "51.2"), "duplicate_row", None, "exact copy of row 12 of this delivery"),    # 13
    Row(nf("SNK01", "40.0")),                                                                    # 14 corrected later
    Row(nf("SNL01", "62.0", lloq=math.nan), "lloq_present", "lloq", "lloq must be present"),      # 15
    Row(nf("SNL02", "62.0", uloq=math.nan), "uloq_present", "uloq", "uloq must be present"),      # 16
    Row(nf("SNL03", "62.0", analyte=None), "analyte_present", "analyte", "analyte must be present (delivered: missing)"),
    Row(nf("SNL04", "62.0", unit=None), "unit_present", "unit", "unit must be present"),
    Row(nf("SNL05", "62.0", dilution=None), "dilution_present", "dilution", "dilution must be present"),
    Row(nf("SNL06", "62.0", run_date=None), "run_date_present", "run_date", "run_date must be present"),
    # a censored result whose limit contradicts the row's LLOQ and ULOQ (both flags would be set)
    Row(nf("SNL07", "<99999"), "censored_limit_inconsistent", None,
        "<99999 says below the LLOQ, but 99999.0 pg/mL is above the ULOQ 1500.0 pg/mL"),
    Row(nf("SNL08", ">0.5"), "censored_limit_inconsistent", None,
        ">0.5 says above the ULOQ, but 0.5 pg/mL is below the LLOQ 3.0 pg/mL"),
    # a tab or line break around a value is not the space staging trims: held back, not read
    # as a plain number (">1500" then tab had loaded as 1500, neither flagged nor censored)
    Row(nf("SNL09", ">1500\t"), "result_readable", "result", "result must be a number"),
    Row(nf("SNL10", "62.0", unit="pg/mL\t"), "unit_known", "unit", "unit must be one of the accepted spellings"),
    Row(nf("\tSNL10", "62.0"), "sample_id_format", "sample_id", "sample_id must be letters"),
    # a trailing line break: the regex engine's $ matches before it, so it is looked for itself
    Row(nf("SNL10\n", "62.0"), "sample_id_no_line_break", "sample_id", "sample_id must not hold a tab or a line break"),
    Row(nf("SNL10", "62.0", unit="pg/mL\n"), "unit_no_line_break", "unit", "unit must not hold a tab or a line break"),
    Row(nf("SNL10", ">1500\n"), "result_no_line_break", "result", "result must not hold a tab or a line break"),
    *[Row(nf(sample_id, result)) for sample_id, result in CENSORED.items()],                     # 15..
    # limits left in pg/mL on a result sent in ng/mL: 45 pg/mL would have read as below 3000
    Row(nf("SNL11", "0.045", unit="ng/mL", lloq=3.0, uloq=1500.0), "limits_disagree_with_assay", None,
        "are 3000.0 and 1500000.0 pg/mL, but the assay's limits are 3.0 and 1500.0 pg/mL (more than 10 times off"),
    Row(nf("SNL12", "62.0", run_date=dt.date(2018, 1, 1)), "run_before_collection", None,
        "assay run on 2018-01-01, before sample SNL12 was collected on 2019-03-06"),
    Row(nf("SNL13", "62.0", run_date=dt.date(2031, 1, 1)), "run_in_future", None, "run date 2031-01-01 is in the future"),
    Row(nf("SNL14", "62.0", plate_id=""), "plate_id_not_blank", "plate_id", "plate_id must not be blank"),
    # the limit written in a censored result becomes its analysis value: not more than 10 times
    # off the row's own limit (a ULOQ x 66; the pg/mL limit on an ng/mL row; the ng/mL one on a pg/mL row)
    Row(nf("SNL15", ">99999"), "censored_limit_inconsistent", None,
        ">99999 pg/mL says above the ULOQ, but its limit 99999.0 pg/mL is more than 10 times off the row's ULOQ "
        "1500.0 pg/mL (a limit in another unit than the result?)"),
    Row(nf("SNL16", ">1500", unit="ng/mL", lloq=0.003, uloq=1.5), "censored_limit_inconsistent", None,
        "its limit 1500000.0 pg/mL is more than 10 times off the row's ULOQ 1500.0 pg/mL"),
    Row(nf("SNL17", "<0.003"), "censored_limit_inconsistent", None,
        "<0.003 pg/mL says below the LLOQ, but its limit 0.003 pg/mL is more than 10 times off the row's LLOQ 3.0"),
    # a diluted sample's limit, four times the LLOQ: loads, below the LLOQ
    Row(nf("SNL18", "<12", dilution=4.0)),
    # a no-break space (French exports) is not the space DuckDB reads a qualifier across: held
    # back, not loaded as the measured value 3.0 or 1500, nor as a result without a value
    Row(nf("SNL19", "<\u00a03.0"), "result_readable", "result", "result must be a number"),
    Row(nf("SNL20", ">\u202f1500"), "result_readable", "result", "result must be a number"),
    Row(nf("SNL21", "below\u00a0LLOQ"), "result_readable", "result", "result must be a number"),
    # the assay's own measures: an infinite CV or dilution is held back; a CV delivered as NaN is missing
    Row(nf("SNL22", "62.5", cv_pct=math.inf), "cv_pct_in_range", "cv_pct", "(delivered: inf)"),
    Row(nf("SNL23", "62.5", dilution=1e300), "dilution_valid", "dilution", "dilution must lie between 1 and 100000"),
    Row(nf("SNL24", "62.5", cv_pct=math.nan)),
]
NF_2_ROWS = [Row(nf("SNK01", "41.5"))]


def _summary(sample_id: str, **overrides: Any) -> dict[str, Any]:
    row = {"sample_id": sample_id, "total_reads_m": 42.0, "pct_mapped": 93.5, "rin": 7.9, "treg_signature": 0.42,
           "run_id": "SEQ01"}
    return {**row, **overrides}


TS_ROWS: list[Row] = [
    Row(_summary("SRN01")),
    Row(_summary("SRN02", rin=11.0), "rin_in_range", "rin", "(delivered: 11.0)"),
    Row(_summary("SRN03", rin=math.nan), "rin_present", "rin", "rin must be present"),
    Row(_summary("SRN04", total_reads_m=-3.0), "total_reads_m_in_range", "total_reads_m", "(delivered: -3.0)"),
    Row(_summary("SRN05", run_id=None), "run_id_present", "run_id", "run_id must be present"),
]


def _gene(sample_id: str, gene_id: str, symbol: str, expression: float) -> dict[str, Any]:
    return {"sample_id": sample_id, "gene_id": gene_id, "gene_symbol": symbol, "expression": expression}


TG_ROWS: list[Row] = [
    Row(_gene("SRN01", "ENSG00000198851", "CD3E", 7.25)),
    Row(_gene("SRN01", "ENSG00000111640", "GAPDH", 11.5)),
    Row(_gene("SRN01", "ENSG00000010610", "CD4", 99.0), "expression_in_range", "expression",
        "expression must lie in the plausible range (log2 CPM): -10 to 25"),
    Row(_gene("SRN01", "ENSG123", "CD8A", 3.1), "gene_id_format", "gene_id", "(delivered: ENSG123)"),
    Row(_gene("SRN01", "ENSG00000153563", "CD8A", math.nan), "expression_present", "expression",
        "expression must be present"),
    Row(_gene("SRN01", None, "CD19", 6.2), "gene_id_present", "gene_id", "gene_id must be present"),
    # a treatment-revealing gene (withheld in a blinded build) reported twice with different values
    Row(_gene("SRN02", "ENSG00000049768", "FOXP3", 4.1), "conflicting_values", None,
        ("sample SRN02 has 2 different", "ENSG00000049768 in this delivery")),
    Row(_gene("SRN02", "ENSG00000049768", "FOXP3", 4.9), "conflicting_values", None,
        ("sample SRN02 has 2 different", "ENSG00000049768 in this delivery")),
    # a gene delivered three times with three values
    *[Row(_gene("SRN05", "ENSG00000198851", "CD3E", value), "conflicting_values", None,
          "sample SRN05 has 3 different values of ENSG00000198851 in this delivery") for value in (7.1, 7.2, 7.3)],
]

# Delivered rows of every accepted file, in file order.
ACCEPTED: dict[str, list[Row]] = {
    TREG_FILE: TREG_ROWS, TREG_FILE_2: TREG_2_ROWS, NF_FILE: NF_ROWS, NF_FILE_2: NF_2_ROWS,
    TS_FILE: TS_ROWS, TG_FILE: TG_ROWS,
}

# Files refused whole: file -> (rule, texts the reason must contain, rows delivered or None).
REFUSED: dict[str, tuple[str, list[str], int | None]] = {
    "labs/treg/treg_batch90_truncated.parquet": (
        "file_readable", ["not a readable Parquet file (truncated or damaged in transfer?)"], None),
    "labs/neurofilament/nf_batch90_not_parquet.parquet": (
        "file_readable", ["not a readable Parquet file"], None),
    "labs/transcript_summary/ts_batch90_empty.parquet": (
        "file_readable", ["the file is empty (0 bytes); nothing can be read."], None),
    "labs/transcript_gene/tg_batch90_zero_rows.parquet": (
        "has_rows", ["the file has a valid header but zero rows."], 0),
    "labs/neurofilament/nf_batch91_missing_unit.parquet": (
        "required_columns", ["required column(s) 'unit' missing for family neurofilament."], 3),
    "labs/treg/treg_batch91_renamed.parquet": (
        "required_columns", ["required column(s) 'cd4_count' missing for family treg.",
                             "Unexpected column(s) present: 'cd4_cells_per_ul' (renamed?)."], 2),
    "labs/treg/treg_batch92_wrong_type.parquet": (
        "column_types", ["column 'cd4_count' is delivered as string, expected DOUBLE;",
                         "values that cannot be read as DOUBLE without changing them: row 2: 'abc', row 4: '12,5'."], 4),
    "labs/transcript_summary/treg_batch93_wrong_folder.parquet": (
        "required_columns", ["missing for family transcript_summary.",
                             "The columns match the treg family: was the file dropped in the wrong folder "
                             "(labs/treg expected)?"], 2),
    # a subjects export's refusal names rows, not values (a birth date in the age column)
    "reference/subjects/subjects_export_20190301_wrong_type.parquet": (
        "column_types", ["column 'age' is delivered as string, expected INTEGER;",
                         "row 2 (values not shown: data about a person)"], 2),
    "reference/subjects/subjects_export_20190302_age_fraction.parquet": (
        "column_types", ["column 'age' is delivered as double, expected INTEGER;",
                         "without changing them: row 2 (values not shown: data about a person)"], 2),
    "reference/sample_manifest/manifest_export_20190102_time_zone.parquet": (
        "column_types", ["column 'collection_datetime' is delivered as a timestamp with time zone Europe/Paris;",
                         "expects TIMESTAMP in site-local time without a zone"], 2),
    "reference/sample_manifest/manifest_export_20190103_zone_text.parquet": (
        "column_types", ["column 'collection_datetime' is delivered as string, expected TIMESTAMP;",
                         "without changing them: row 2: '2019-03-06T08:00:00Z'"], 2),
    "labs/treg/treg_batch96_time_of_day.parquet": (
        "column_types", ["column 'acquisition_date' is delivered as timestamp[us], expected DATE;",
                         "values that cannot be read as DATE without changing them: "
                         "row 2: '2019-03-01 23:59:00'"], 2),
    "labs/treg/treg_batch96_date_text.parquet": (
        "column_types", ["column 'acquisition_date' is delivered as string, expected DATE;",
                         "without changing them: row 2: '2019-03-01 13:00:00'"], 2),
    "labs/treg/treg_batch96_true_false.parquet": (
        "column_types", ["column 'cd4_count' is delivered as true/false, expected a number (DOUBLE)."], 2),
    "labs/treg/treg_batch97_unnamed_column.parquet": (
        "column_names", ["column(s) at position(s) 7 have no name; every column must be named."], 1),
    "labs/treg/treg_batch97_same_column_twice.parquet": (
        "unique_column_names", ["column(s) 'cd4_count', 'cd4_count' appear more than once"], 1),
    "labs/treg/treg_batch94_export.csv": (
        "parquet_file", ["not a Parquet delivery: deliveries are Parquet files named *.parquet (this one ends in '.csv')"],
        None),
    # values no later step could read: they stopped every build, every family's new files waiting
    "labs/treg/treg_batch98_year_typo.parquet": (
        "column_types", ["column 'acquisition_date' is delivered as string, expected DATE;",
                         "without changing them: row 2: '20190-03-01'"], 2),
    "labs/treg/treg_batch98_infinite_date.parquet": (
        "column_types", ["column 'acquisition_date' is delivered as string, expected DATE;",
                         "without changing them: row 1: 'infinity'"], 2),
    "labs/treg/treg_batch98_far_date.parquet": (
        "column_types", ["column 'acquisition_date' holds dates outside the years 1 to 9999: row 2: '10183-"], 2),
    # text read as a number or a date only when written as one: DuckDB would read these
    "labs/treg/treg_batch98_epoch.parquet": (
        "column_types", ["column 'acquisition_date' is delivered as string, expected DATE;",
                         "without changing them: row 2: 'epoch'"], 2),
    "labs/treg/treg_batch98_underscore.parquet": (
        "column_types", ["column 'cd4_count' is delivered as string, expected DOUBLE;",
                         "without changing them: row 2: '1_000'"], 2),
    "labs/treg/treg_batch98_latin1.parquet": (
        "column_types", ["column 'panel_version' holds text that is not UTF-8: row 2: b'TREG-\\xff\\xfe'; "
                         "export the file with UTF-8 text."], 2),
    "labs/treg/treg_batch98_nested_text.parquet": (
        "column_types", ["column 'panel_version' is delivered as struct<version: string, arm: string>, expected one "
                         "VARCHAR value per row; nested values (structs, lists, maps) are not read into a declared column."], 2),
}


def _replace_column(path: Path, name: str, array: pa.Array, new_name: str | None = None) -> None:
    table = pq.read_table(path)
    position = table.column_names.index(name)
    pq.write_table(table.set_column(position, new_name or name, array if array is not None else table[name]), path)


def write_reference(landing: Path, manifest: dict[str, tuple[str, str, str, int]]) -> None:
    """Five subjects (one never randomised, one dead, one withdrawn), their list and a manifest."""
    write_delivery(landing, "subjects", Path(SUBJECTS_FILE).name, [
        subject(IL2, "FR01"),
        subject(PBO, "FR01", onset="BULBAR", sex="F"),
        subject(RUNIN_ONLY, "UK01", randomised=False),
        subject(DEAD, "FR02", death_date=study_date(DEATH_DAY)),
        subject(WITHDRAWN, "FR02", withdrawal_date=study_date(WITHDRAWAL_DAY), withdrawal_reason="consent withdrawn"),
    ])
    write_delivery(landing, "randomisation", "randomisation_list.parquet", [
        {"usubjid": u, "randomisation_number": n, "stratum": "FRA-LIMB", "block_id": "B01", "armcd": a}
        for n, (u, a) in enumerate([(IL2, "IL2"), (PBO, "PBO"), (DEAD, "IL2"), (WITHDRAWN, "PBO")], 1)
    ])
    rows = [sample(s, u, v, m, d) for s, (u, v, m, d) in manifest.items()]
    for row in rows:
        if row["sample_id"] == "SFUTURE":
            row["collection_datetime"] = FUTURE
    write_delivery(landing, "sample_manifest", Path(MANIFEST_FILE).name, rows)


def write_bad_landing(landing: Path) -> None:
    """Landing zone 1: the reference files, the bad lab deliveries and the files to refuse."""
    write_reference(landing, MANIFEST)
    families = {"treg": TREG_FILE, "neurofilament": NF_FILE, "transcript_summary": TS_FILE, "transcript_gene": TG_FILE}
    for file, rows in ACCEPTED.items():
        family = next(f for f, example in families.items() if Path(example).parent == Path(file).parent)
        write_delivery(landing, family, Path(file).name, [r.values for r in rows])
    # an extra column (kept in raw.extra_columns) and a header in another case (read as sample_id)
    extra = write_delivery(landing, "treg", Path(TREG_EXTRA_FILE).name,
                           [{**_treg("SWB13", cd4=1010.0, pct=3.5), "operator_comment": EXTRA_COMMENT}])
    _replace_column(extra, "sample_id", None, new_name="Sample_ID")

    # --- refused whole ---
    truncated = write_delivery(landing, "treg", "treg_batch90_truncated.parquet", [_treg(f"SWB{i:02d}") for i in range(1, 9)])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (landing / "labs/neurofilament/nf_batch90_not_parquet.parquet").write_text(
        "sample_id,analyte,result\nSNV01,NfL,62.0\n", encoding="utf-8")
    (landing / "labs/transcript_summary/ts_batch90_empty.parquet").write_bytes(b"")
    write_delivery(landing, "transcript_gene", "tg_batch90_zero_rows.parquet", [])
    missing = write_delivery(landing, "neurofilament", "nf_batch91_missing_unit.parquet",
                             [nf("SNV01", "60.0"), nf("SNV02", "61.0"), nf("SNU01", "62.0")])
    pq.write_table(pq.read_table(missing).drop_columns(["unit"]), missing)
    renamed = write_delivery(landing, "treg", "treg_batch91_renamed.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(renamed, "cd4_count", None, new_name="cd4_cells_per_ul")
    mistyped = write_delivery(landing, "treg", "treg_batch92_wrong_type.parquet",
                              [_treg(s) for s in ("SWB01", "SWB03", "SWB04", "SWB05")])
    _replace_column(mistyped, "cd4_count", pa.array(["800", "abc", "750.5", "12,5"]))
    stray = write_delivery(landing, "treg", "_stray.parquet", [_treg("SWB03"), _treg("SWB04")])
    stray.rename(landing / "labs/transcript_summary/treg_batch93_wrong_folder.parquet")
    subjects = write_delivery(landing, "subjects", "subjects_export_20190301_wrong_type.parquet",
                              [subject(IL2, "FR01", age=61), subject(PBO, "FR01", age=58)])
    _replace_column(subjects, "age", pa.array(["61", "sixty"]))
    (landing / "labs/treg/treg_batch94_export.csv").write_text(
        "sample_id,cd4_count\nSWB01,800\n", encoding="utf-8")
    # casts that would change values, and columns without a name or named twice
    fraction = write_delivery(landing, "subjects", "subjects_export_20190302_age_fraction.parquet",
                              [subject(IL2, "FR01", age=61), subject(PBO, "FR01", age=58)])
    _replace_column(fraction, "age", pa.array([61.0, 58.6]))
    zoned = write_delivery(landing, "sample_manifest", "manifest_export_20190102_time_zone.parquet",
                           [sample(s, *MANIFEST[s]) for s in ("SWB01", "SWB02")])
    _replace_column(zoned, "collection_datetime",
                    pq.read_table(zoned)["collection_datetime"].cast(pa.timestamp("us", tz="Europe/Paris")))
    zoned_text = write_delivery(landing, "sample_manifest", "manifest_export_20190103_zone_text.parquet",
                                [sample(s, *MANIFEST[s]) for s in ("SWB01", "SWB02")])
    _replace_column(zoned_text, "collection_datetime", pa.array(["2019-03-06 09:00:00", "2019-03-06T08:00:00Z"]))
    timed = write_delivery(landing, "treg", "treg_batch96_time_of_day.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(timed, "acquisition_date",
                    pa.array([dt.datetime(2019, 3, 1), dt.datetime(2019, 3, 1, 23, 59)], pa.timestamp("us")))
    texts = write_delivery(landing, "treg", "treg_batch96_date_text.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(texts, "acquisition_date", pa.array(["2019-03-01", "2019-03-01 13:00:00"]))
    flagged = write_delivery(landing, "treg", "treg_batch96_true_false.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(flagged, "cd4_count", pa.array([True, False]))
    unnamed = write_delivery(landing, "treg", "treg_batch97_unnamed_column.parquet", [_treg("SWB01")])
    pq.write_table(pq.read_table(unnamed).append_column("", pa.array(["x"])), unnamed)
    twice = write_delivery(landing, "treg", "treg_batch97_same_column_twice.parquet", [_treg("SWB01")])
    table = pq.read_table(twice)
    pq.write_table(table.append_column("cd4_count", table["cd4_count"]), twice)
    typo = write_delivery(landing, "treg", "treg_batch98_year_typo.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(typo, "acquisition_date", pa.array(["2019-03-01", "20190-03-01"]))
    infinite = write_delivery(landing, "treg", "treg_batch98_infinite_date.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(infinite, "acquisition_date", pa.array(["infinity", "2019-03-01"]))
    far = write_delivery(landing, "treg", "treg_batch98_far_date.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(far, "acquisition_date", pa.array([17956, 3_000_000], pa.int32()).cast(pa.date32()))
    epoch = write_delivery(landing, "treg", "treg_batch98_epoch.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(epoch, "acquisition_date", pa.array(["2019-03-01", "epoch"]))
    underscore = write_delivery(landing, "treg", "treg_batch98_underscore.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(underscore, "cd4_count", pa.array(["800", "1_000"]))
    latin1 = write_delivery(landing, "treg", "treg_batch98_latin1.parquet", [_treg("SWB01"), _treg("SWB03")])
    text = [b"TREG-v1", b"TREG-\xff\xfe"]
    offsets = np.cumsum([0] + [len(t) for t in text]).astype(np.int32)
    _replace_column(latin1, "panel_version",
                    pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(text))]))
    nested = write_delivery(landing, "treg", "treg_batch98_nested_text.parquet", [_treg("SWB01"), _treg("SWB03")])
    _replace_column(nested, "panel_version", pa.array([{"version": "TREG-v1", "arm": "IL2"}] * 2,
                                                      pa.struct([("version", pa.string()), ("arm", pa.string())])))
    # extra columns whose names need quoting, and 256-bit decimals (read as their exact text)
    odd = write_delivery(landing, "treg", ODD_EXTRA_FILE.split("/")[-1], [_treg("SWB17", cd4=910.0, pct=6.0)])
    table = pq.read_table(odd)
    table = table.set_column(table.column_names.index("cd4_count"), "cd4_count",
                             pa.array([Decimal("910.00")], pa.decimal256(40, 2)))
    table = table.append_column('comment "lab"', pa.array(["re-run"])).append_column(
        "x_dec", pa.array([Decimal("1.5")], pa.decimal256(60, 10)))
    pq.write_table(table, odd)
    # files outside every family's folder: listed, never taken in (a part starting with _ is ignored)
    for stray in UNRECOGNISED + ["_archive/treg_batch01.parquet"]:
        (landing / stray).parent.mkdir(parents=True, exist_ok=True)
        (landing / stray).write_bytes((landing / TREG_FILE).read_bytes())
    # a Parquet delivery whose name ends in capitals is a delivery like any other
    write_delivery(landing, "treg", "TREG_BATCH95.PARQUET", [_treg("SWB16", cd4=1111.0)])


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Built:
    landing = tmp_path_factory.mktemp("bad_landing")
    write_bad_landing(landing)
    warehouse = tmp_path_factory.mktemp("bad_warehouse") / "mirocals.duckdb"
    result = build_warehouse(landing, warehouse)
    assert result.success, f"build failed: {getattr(result, 'errors', result.run_id)}"
    return Built(landing, warehouse, result)


def _held(built: Built, file_name: str) -> dict[int, dict]:
    return {
        r["row_number"]: r
        for r in built.dicts("select * from quarantine.rejected_rows where file_name = ?", [file_name])
    }


def _reconciliation(built: Built, file_name: str) -> dict:
    rows = built.dicts("select * from audit.reconciliation where file_name = ?", [file_name])
    assert len(rows) == 1, f"{file_name}: {len(rows)} reconciliation rows"
    return rows[0]


def _in_core(built: Built, file_name: str, row_number: int) -> list[str]:
    """The core tables that carry a value from this delivered row."""
    return [
        table for table in ("core.treg", "core.neurofilament", "core.transcript_summary", "core.transcript_gene",
                            "core.sample")
        if built.scalar(f"select count(*) from {table} where file_name = ? and row_number = ?", [file_name, row_number])
    ]


BAD_ROWS = [
    pytest.param(file, number, row, id=f"{Path(file).stem}-row{number}-{row.rule}")
    for file, rows in ACCEPTED.items()
    for number, row in enumerate(rows, 1)
    if row.rule is not None
]


@pytest.mark.parametrize(("file_name", "row_number", "row"), BAD_ROWS)
def test_bad_row_is_quarantined_with_rule_reason_and_delivered_row(bad, file_name, row_number, row):
    held = _held(bad, file_name)
    assert row_number in held, f"{file_name} row {row_number} ({row.rule}) was not quarantined"
    record = held[row_number]
    assert row.rule in record["rule"].split(", "), record
    for text in row.reason:
        assert text in record["reason"], record
    delivered = json.loads(record["delivered_row"])
    assert delivered["sample_id"] == row.values["sample_id"], "the row is kept exactly as delivered"
    if row.column is not None:
        # the expectation that failed names the column
        failures = bad.rows(
            "select f.column_name from audit.row_failure f join audit.delivery d using (delivery_id) "
            "where d.file_name = ? and f.row_number = ? and f.rule = ?", [file_name, row_number, row.rule])
        assert failures == [(row.column,)]
    assert _in_core(bad, file_name, row_number) == [], "a held-back row reached core"


def test_quarantine_holds_exactly_the_bad_rows(bad):
    for file_name, rows in ACCEPTED.items():
        expected = {n for n, r in enumerate(rows, 1) if r.rule is not None}
        assert set(_held(bad, file_name)) == expected, file_name


@pytest.mark.parametrize("sample_id", sorted(SAMPLE_FAULTS))
def test_faulty_sample_holds_back_its_manifest_row(bad, sample_id):
    rule, reason = SAMPLE_FAULTS[sample_id]
    held = [r for r in _held(bad, MANIFEST_FILE).values() if json.loads(r["delivered_row"])["sample_id"] == sample_id]
    assert [(r["rule"], r["reason"]) for r in held] == [(rule, reason)]
    assert bad.scalar("select count(*) from core.sample where sample_id = ?", [sample_id]) == 0


def test_valid_rows_of_bad_deliveries_load_unchanged(bad):
    cd4 = dict(bad.rows("select sample_id, aval from core.treg where paramcd = 'CD4CNT'"))
    # the whitespace and lower case of ' swb02 ' are harmonised: the row loads as SWB02
    assert cd4 == {"SWB01": 800.0, "SWB02": 910.0, "SWB11": 640.0, "SWB12": 1234.5, "SWB13": 1010.0, "SWB14": 820.0,
                   "SWB17": 910.0,
                   "SWB16": 1111.0}
    provenance = dict(bad.rows("select sample_id, file_name || '#' || row_number from core.treg where paramcd = 'CD4CNT'"))
    assert provenance["SWB02"] == f"{TREG_FILE}#9"
    assert provenance["SWB12"] == f"{TREG_FILE}#21"
    assert provenance["SWB13"] == f"{TREG_EXTRA_FILE}#1"
    nfl = {r["sample_id"]: r for r in bad.dicts("select * from core.neurofilament")}
    assert nfl["SNV01"]["aval"] == 62.0 and nfl["SNV01"]["reported_result"] == "62.0"
    assert nfl["SNV02"]["aval"] == pytest.approx(84.0) and nfl["SNV02"]["reported_unit"] == "NG/ML"
    assert nfl["SND01"]["aval"] == 51.2 and nfl["SND01"]["row_number"] == 12
    assert set(nfl) == {"SNV01", "SNV02", "SND01", "SNK01", "SNL18", "SNL24", *CENSORED}
    # a diluted sample's censored result: its limit is the number written in it
    assert (nfl["SNL18"]["aval"], nfl["SNL18"]["blq_flag"], nfl["SNL18"]["lloq"]) == (None, True, 12.0)
    summary = {(r[0], r[1]): r[2] for r in bad.rows("select sample_id, paramcd, aval from core.transcript_summary")}
    assert {k: v for k, v in summary.items() if k[1] != "TRSIG"} == {
        ("SRN01", "READSM"): 42.0, ("SRN01", "MAPPCT"): 93.5, ("SRN01", "RIN"): 7.9}
    genes = dict(bad.rows("select gene_symbol, aval from core.transcript_gene"))
    assert genes == {"CD3E": 7.25, "GAPDH": 11.5}


def test_no_nan_or_infinite_value_reaches_core(bad):
    doubles = bad.rows("select table_name, column_name from information_schema.columns "
                       "where table_schema = 'core' and data_type = 'DOUBLE' order by all")
    assert ("neurofilament", "cv_pct") in doubles and ("treg", "aval") in doubles
    for table, column in doubles:
        assert bad.scalar(f"select count(*) from core.{table} where isnan({column}) or isinf({column})") == 0, (table, column)
    assert bad.scalar("select cv_pct from core.neurofilament where sample_id = 'SNL24'") is None


@pytest.mark.parametrize("sample_id", sorted(CENSORED))
def test_censored_result_is_kept_and_flagged_in_every_declared_spelling(bad, sample_id):
    rows = bad.dicts("select * from core.neurofilament where sample_id = ?", [sample_id])
    assert len(rows) == 1, f"{CENSORED[sample_id]!r} was not loaded"
    row = rows[0]
    assert row["reported_result"] == CENSORED[sample_id]
    assert row["aval"] is None
    below = sample_id.startswith("SNB")
    assert (row["blq_flag"], row["alq_flag"]) == (below, not below)
    assert row["lloq"] == 3.0 and row["uloq"] == 1500.0


def test_every_declared_censoring_pattern_is_exercised():
    from pipelines.study import load_study

    patterns = load_study().raw["censored_results"]
    for key, spellings in (("below", BELOW_LLOQ), ("above", ABOVE_ULOQ)):
        for pattern in patterns[key]:
            assert any(re.fullmatch(pattern, s.strip(), re.IGNORECASE) for s in spellings), (key, pattern)


def test_duplicate_key_across_deliveries_newest_wins_with_history(bad):
    treg_row = bad.dicts("select aval, file_name, row_number from core.treg where sample_id = 'SWB11' and paramcd = 'CD4CNT'")
    assert treg_row == [{"aval": 640.0, "file_name": TREG_FILE_2, "row_number": 1}]
    nfl_row = bad.dicts("select aval, file_name from core.neurofilament where sample_id = 'SNK01'")
    assert nfl_row == [{"aval": 41.5, "file_name": NF_FILE_2}]
    assert _reconciliation(bad, TREG_FILE)["rows_superseded"] == 1
    assert _reconciliation(bad, NF_FILE)["rows_superseded"] == 1
    corrections = {r["record_key"]: r for r in bad.dicts("select * from audit.correction")}
    assert set(corrections) == {"SWB11", "SNK01 NfL"}
    swb11 = corrections["SWB11"]
    assert (swb11["superseded_file_name"], swb11["superseded_row_number"]) == (TREG_FILE, 20)
    assert swb11["replaced_by_file_name"] == TREG_FILE_2 and swb11["value_changed"] is True
    assert json.loads(swb11["superseded_values"])["cd4_count"] == 600.0
    assert json.loads(swb11["replacing_values"])["cd4_count"] == 640.0
    assert swb11["replaced_at"] == bad.scalar("select received_at from audit.delivery where file_name = ?", [TREG_FILE_2])
    assert json.loads(corrections["SNK01 NfL"]["superseded_values"])["result"] == "40.0"


def test_extra_column_is_named_in_raw_and_noted(bad):
    # a blinded build: nobody has judged what an undeclared column reveals, so only its name is kept
    extra = bad.rows("select sample_id, cd4_count, extra_columns from raw.treg where file_name = ?", [TREG_EXTRA_FILE])
    assert [(s, c, json.loads(e)) for s, c, e in extra] == [("SWB13", 1010.0, {"operator_comment": "withheld (blinded build)"})]
    record = _reconciliation(bad, TREG_EXTRA_FILE)
    assert record["status"] == "loaded" and record["balanced"] is True
    assert "column(s) 'operator_comment' are not in the contract; kept in raw.extra_columns" in record["warnings"]
    assert "values of columns outside the contract are withheld (blinded build)" in record["warnings"]
    assert "column 'Sample_ID' read as 'sample_id'" in record["warnings"]


def test_a_parquet_file_named_in_capitals_is_taken_in(bad):
    record = _reconciliation(bad, "labs/treg/TREG_BATCH95.PARQUET")
    assert (record["status"], record["rows_loaded"], record["balanced"]) == ("loaded", 1, True)
    assert bad.rows("select aval from core.treg where sample_id = 'SWB16' and paramcd = 'CD4CNT'") == [(1111.0,)]


@pytest.mark.parametrize("file_name", sorted(REFUSED))
def test_refused_file_is_recorded_with_rule_and_readable_reason(bad, file_name):
    rule, texts, rows = REFUSED[file_name]
    files = bad.dicts("select * from quarantine.rejected_files where file_name = ?", [file_name])
    assert len(files) == 1
    record = files[0]
    assert (record["status"], record["rule"], record["rows_delivered"]) == ("rejected", rule, rows)
    assert record["reason"].startswith(f"{file_name}: "), "the reason names the file"
    for text in texts:
        assert text in record["reason"]
    reconciliation = _reconciliation(bad, file_name)
    assert (reconciliation["status"], reconciliation["rule"], reconciliation["reason"]) == ("rejected", rule, record["reason"])
    assert reconciliation["rows_loaded"] == 0
    if rows is None:
        # unreadable: its rows cannot be counted (README, Reconciliation)
        assert reconciliation["rows_delivered"] is None and reconciliation["rows_quarantined"] is None
    else:
        # every row of a refused file is counted as quarantined
        assert reconciliation["rows_quarantined"] == rows and reconciliation["balanced"] is True
    family = bad.scalar("select family from audit.delivery where file_name = ?", [file_name])
    assert bad.scalar(f"select count(*) from raw.{family} where file_name = ?", [file_name]) == 0
    assert bad.scalar("select count(*) from quarantine.rejected_rows where file_name = ?", [file_name]) == 0


def test_refused_subjects_export_changes_no_subject(bad):
    # the newer export was refused: the earlier one is still the current snapshot
    assert bad.scalar("select count(*) from core.subject") == 5
    assert bad.scalar("select min(age) || '-' || max(age) from core.subject") == "60-60"


def test_every_delivery_reconciles(bad):
    records = bad.dicts("select * from audit.reconciliation")
    by_file = {r["file_name"]: r for r in records}
    landing_files = {p.relative_to(bad.landing).as_posix() for p in bad.landing.rglob("*.parquet")
                     if not any(part.startswith(("_", ".")) for part in p.relative_to(bad.landing).parts)
                     and not p.relative_to(bad.landing).as_posix().startswith("restricted/")}
    # every file is a delivery, or listed as outside every family's folder
    listed = {name for (name,) in bad.rows("select file_name from quarantine.unrecognised_files")}
    assert landing_files <= set(by_file) | listed, f"files without a record: {landing_files - set(by_file) - listed}"
    for record in records:
        if record["rows_delivered"] is None:
            assert record["file_name"] in REFUSED and REFUSED[record["file_name"]][2] is None
            continue
        assert record["balanced"] is True, record
        assert record["rows_delivered"] == record["rows_loaded"] + record["rows_quarantined"], record
    for file_name, rows in ACCEPTED.items():
        record = by_file[file_name]
        bad_rows = sum(r.rule is not None for r in rows)
        assert (record["rows_delivered"], record["rows_loaded"], record["rows_quarantined"]) == (
            len(rows), len(rows) - bad_rows, bad_rows), file_name
        # counted independently of the reconciliation model: raw rows and quarantined rows
        family = bad.scalar("select family from audit.delivery where file_name = ?", [file_name])
        assert bad.scalar(f"select count(*) from raw.{family} where file_name = ?", [file_name]) == len(rows)
        assert len(_held(bad, file_name)) == bad_rows
    manifest = by_file[MANIFEST_FILE]
    assert (manifest["rows_delivered"], manifest["rows_quarantined"]) == (len(MANIFEST), len(SAMPLE_FAULTS))


def test_every_accepted_row_is_loaded_or_quarantined_never_both(bad):
    for family in ("treg", "neurofilament", "transcript_summary", "transcript_gene", "sample_manifest"):
        raw = bad.scalar(f"select count(*) from raw.{family}")
        held = bad.scalar("select count(*) from quarantine.rejected_rows where family = ?", [family])
        loaded = bad.scalar("select sum(rows_loaded) from audit.reconciliation where family = ?", [family])
        assert raw == held + loaded, family


# ---------------------------------------------------------------------------------------------
# mirocals check: the same verdicts as the build, nothing written
# ---------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def wide_cli(monkeypatch):
    """The CLI's consoles, wide enough that no reason or rule is wrapped."""
    for value in vars(cli).values():
        if isinstance(value, Console):
            monkeypatch.setattr(value, "_width", 1000)
    return CliRunner()


def _check(runner: CliRunner, file: Path, warehouse: Path, *extra: str):
    return runner.invoke(cli.app, ["check", str(file), "--warehouse", str(warehouse), "--rows", "1000", *extra])


@pytest.mark.parametrize("file_name", sorted(REFUSED))
def test_check_refuses_what_the_build_refuses(bad, wide_cli, file_name):
    before = sha256(bad.warehouse), sha256(work_file(bad.warehouse))
    result = _check(wide_cli, bad.landing / file_name, bad.warehouse)
    assert result.exit_code == 1, result.output
    build_reason = bad.scalar("select reason from audit.delivery where file_name = ?", [file_name])
    # the build names the file by its path in the landing zone, check by its name
    expected = f"{Path(file_name).name}: {build_reason.split(': ', 1)[1]}"
    assert "REFUSED" in result.output
    assert " ".join(expected.split()) in " ".join(result.output.split())
    assert (sha256(bad.warehouse), sha256(work_file(bad.warehouse))) == before


@pytest.mark.parametrize("file_name", ["labs/treg/treg_batch96_time_of_day.parquet",
                                       "labs/treg/treg_batch90_truncated.parquet"])
def test_check_says_what_the_build_did_with_a_landing_file_it_took_in(bad, wide_cli, file_name):
    delivery, reason = bad.rows("select delivery_id, reason from audit.delivery where file_name = ?", [file_name])[0]
    result = _check(wide_cli, bad.landing / file_name, bad.warehouse, "--landing", str(bad.landing))
    assert result.exit_code == 1, result.output
    assert (f"{file_name} was taken in already as delivery {delivery}, which was refused: {reason}. A build skips it"
            in " ".join(result.output.split()))


def test_check_tells_the_family_of_an_unreadable_file_from_its_name(bad, wide_cli, tmp_path):
    whole = (bad.landing / TREG_FILE).read_bytes()
    truncated = tmp_path / "outbox" / "treg_batch09.parquet"  # not in a family's folder
    truncated.parent.mkdir()
    truncated.write_bytes(whole[: len(whole) // 2])
    result = _check(wide_cli, truncated, bad.warehouse)
    assert result.exit_code == 1, result.output
    assert "REFUSED (treg) treg_batch09.parquet: not a readable Parquet file" in result.output
    nameless = tmp_path / "outbox" / "results.parquet"
    nameless.write_bytes(whole[: len(whole) // 2])
    result = _check(wide_cli, nameless, bad.warehouse)
    assert result.exit_code == 2, result.output
    assert "cannot tell which delivery family this file belongs to" in result.output
    assert "It cannot be read as Parquet" in result.output and "Give --family" in result.output


@pytest.mark.parametrize("file_name", ["labs/Treg/treg_batch60.parquet", "treg_batch61.parquet",
                                       "_archive/treg_batch01.parquet"])
def test_check_says_a_landing_file_where_a_build_does_not_look_is_not_taken_in(bad, wide_cli, file_name):
    result = _check(wide_cli, bad.landing / file_name, bad.warehouse, "--landing", str(bad.landing), "--family", "treg")
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"NOT TAKEN IN (treg) {file_name}" in output and "ACCEPTED" not in output
    expected = ("a build ignores paths with a part starting with '_' or '.'" if file_name.startswith("_")
                else "is not in the treg folder labs/treg/: a build does not take it in")
    assert expected in output


def test_check_lists_the_remarks_a_file_is_accepted_with(bad, wide_cli, tmp_path):
    extra = write_delivery(tmp_path, "treg", "treg_batch91.parquet", [{**_treg("SWB01", cd4=905.0), "comment": "x"}])
    result = _check(wide_cli, extra, bad.warehouse)
    assert result.exit_code == 0, result.output
    assert "Accepted with remarks: column(s) 'comment' are not in the contract; kept in raw.extra_columns" in " ".join(
        result.output.split())


def test_check_exits_1_when_not_one_row_would_load(bad, wide_cli, tmp_path):
    unknown = write_delivery(tmp_path, "treg", "treg_batch90.parquet", [_treg("SWB404"), _treg("SWB405")])
    result = _check(wide_cli, unknown, bad.warehouse)
    assert result.exit_code == 1, result.output
    assert "2 rows, 0 would load, 2 would be held back" in result.output
    assert "sample SWB404 is not in the biobank manifest" in result.output
    assert "Not one row would load." in result.output


def test_check_refuses_the_bytes_of_a_delivery_already_loaded(bad, wide_cli, tmp_path):
    copy = tmp_path / "labs" / "treg" / "treg_batch01_sent_again.parquet"
    copy.parent.mkdir(parents=True)
    copy.write_bytes((bad.landing / TREG_FILE).read_bytes())
    # a warehouse whose path holds a quote
    warehouse = tmp_path / "o'brien" / "mirocals.duckdb"
    warehouse.parent.mkdir()
    warehouse.write_bytes(bad.warehouse.read_bytes())
    # the blinded warehouse's digest key, which the pipeline's account can read
    digest_key_file(warehouse).write_bytes(digest_key_file(bad.warehouse).read_bytes())
    before = sha256(warehouse)
    result = _check(wide_cli, copy, warehouse)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "REFUSED (treg) treg_batch01_sent_again.parquet: identical bytes" in output
    assert f"({TREG_FILE}), already loaded; nothing new was loaded." in output
    assert "no longer there" not in output  # the landing zone is not where the checked file is
    assert sha256(warehouse) == before


def test_check_prints_file_names_and_reasons_as_they_are(bad, wide_cli, tmp_path):
    # square brackets are markup to the console library: they must reach the terminal as typed
    accepted = tmp_path / "labs" / "treg" / "treg_[final].parquet"
    accepted.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(bad.landing / TREG_FILE), accepted, compression="zstd")
    result = _check(wide_cli, accepted, bad.warehouse)
    assert result.exit_code == 0 and "ACCEPTED (treg) " in result.output and "treg_[final].parquet" in result.output
    refused = tmp_path / "labs" / "treg" / "treg_[v2].parquet"
    refused.write_bytes((bad.landing / "labs/treg/treg_batch96_time_of_day.parquet").read_bytes())
    result = _check(wide_cli, refused, bad.warehouse)
    assert result.exit_code == 1 and "treg_[v2].parquet: column 'acquisition_date' is delivered as timestamp[us]" in result.output


@pytest.mark.parametrize("file_name", [TREG_FILE, NF_FILE, TS_FILE, TG_FILE])
def test_check_lists_the_rows_the_build_holds_back(bad, wide_cli, file_name, tmp_path):
    before = sha256(bad.warehouse), sha256(work_file(bad.warehouse))
    # the same rows exported again (other bytes): the loaded file itself would be a duplicate
    again = tmp_path / file_name
    again.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(bad.landing / file_name), again, compression="zstd")
    result = _check(wide_cli, again, bad.warehouse)
    assert result.exit_code == 0, result.output
    rows = ACCEPTED[file_name]
    held = _held(bad, file_name)
    assert (f"{len(rows)} rows, {len(rows) - len(held)} would load, {len(held)} would be held back"
            in result.output)
    listed = {
        int(m.group(1)): m.group(2).strip()
        for m in re.finditer(r"^\W*(\d+)\s*│\s*([a-z0-9_, ]+?)\s*│", result.output, re.MULTILINE)
    }
    assert listed == {n: r["rule"] for n, r in held.items()}
    assert (sha256(bad.warehouse), sha256(work_file(bad.warehouse))) == before


# ---------------------------------------------------------------------------------------------
# Landing zone 2: personal data
# ---------------------------------------------------------------------------------------------

# column name -> (arrow type, value planted in every row). Row sample ids are planted too.
PERSONAL = {
    "patient_name": (pa.string(), "Zebulon Quackenbush"),
    "Patient Name": (pa.string(), "Quilla Zarkovic"),
    "surname": (pa.string(), "Xanthopoulou"),
    "initials": (pa.string(), "ZQX"),
    "patient_initials": (pa.string(), "QZW"),
    "date_of_birth": (pa.date32(), dt.date(1953, 4, 17)),
    "dob": (pa.string(), "1949-11-02"),
    "patient_dob": (pa.string(), "1951-07-23"),
    "birth_date": (pa.date32(), dt.date(1950, 1, 31)),
    "address": (pa.string(), "17 Rue Imaginaire, 30000 Nimes"),
    "home_address": (pa.string(), "221B Quackenbush Street"),
    "phone": (pa.string(), "+33 6 12 34 56 78"),
    "phone_number": (pa.string(), "+44 7700 900123"),
    "email": (pa.string(), "zebulon.quackenbush@example.org"),
    "E-mail": (pa.string(), "quilla.zarkovic@example.org"),
    "patient_email": (pa.string(), "xq@example.net"),
    "nhs_number": (pa.string(), "943 476 5919"),
    "name_of_patient": (pa.string(), "Ottoline Brumbleby"),
    # French exports
    "nom": (pa.string(), "Dupontellier"),
    "Prénom": (pa.string(), "Zéphyrine"),
    "date_naissance": (pa.date32(), dt.date(1958, 3, 14)),
    "DDN": (pa.string(), "1947-08-09"),
    "tel": (pa.string(), "+33 4 66 00 11 22"),
    "adresse": (pa.string(), "3 Impasse Fictive, 34000 Montpellier"),
    "IPP": (pa.string(), "IPP-88412077"),
    "N° Sécurité sociale": (pa.string(), "1 58 03 30 189 042 17"),
}


@pytest.mark.parametrize("column", ["year_of_birth", "Birth year", "nom_de_naissance", "Nom d'usage", "Date de naissance",
                                    "téléphone_portable", "code_postal", "courriel", "num_secu", "postal_code", "zip",
                                    "address_line1", "address1", "contact_email", "email_1", "mail_patient",
                                    "cell_phone", "work_phone", "phone1", "initiales", "ville", "city", "forename",
                                    "forenames", "middle_name", "name_first", "social_security_number", "socialsecurityno",
                                    "national_id", "place_of_birth", "birth_place", "medical_record_number",
                                    "passport_number", "dob_patient", "fecha_nacimiento", "Vorname", "primer_apellido",
                                    "segundo_apellido", "nombre_paciente", "fecha_nac", "geburtsname", "vorname_patient",
                                    "dni", "teléfono", "date_of_birth_patient", "social_security", *PERSONAL])
def test_personal_data_column_names_are_recognised(column):
    assert load_contracts().is_personal_data(column)


def test_no_contract_column_or_common_lab_column_looks_like_personal_data():
    contracts = load_contracts()
    names = [c.name for f in contracts.families.values() for c in f.columns]
    names += ["notes", "nominal_dose", "telomere_length", "panel", "operator_comment", "address_type", "n_cells",
              "initial_volume", "zip_archive_name", "mail_date", "phone_model", "postdose_hours", "site_city",
              "gene_name", "analyte_name", "national_site_id", "birth_cohort", "middle_dilution", "national",
              "nationality", "national_lab_id", "sample_name", "run_name", "plate_name", "birth_weight"]
    assert [n for n in names if contracts.is_personal_data(n)] == []
PII_FAMILIES = ("treg", "neurofilament", "transcript_summary", "transcript_gene", "sample_manifest", "subjects")


def _pii_file(index: int, column: str) -> tuple[str, str]:
    family = PII_FAMILIES[index % len(PII_FAMILIES)]
    stem = re.sub(r"[^a-z]+", "_", column.lower()).strip("_")
    return family, f"{family}_pii_{index:02d}_{stem}.parquet"


def _pii_rows(family: str, index: int) -> list[dict[str, Any]]:
    """Two otherwise valid rows; their sample (or subject) ids are planted values too."""
    ids = [f"PIIROW{index:02d}{n}" for n in "AB"]
    if family == "treg":
        return [_treg(i) for i in ids]
    if family == "neurofilament":
        return [nf(i, "55.5") for i in ids]
    if family == "transcript_summary":
        return [_summary(i) for i in ids]
    if family == "transcript_gene":
        return [_gene(i, "ENSG00000198851", "CD3E", 7.0) for i in ids]
    if family == "sample_manifest":
        return [sample(i, IL2, "BASELINE", "SERUM", 1) for i in ids]
    return [subject(usubjid, "FR09") for usubjid in _planted_ids(family, index)]


def _planted_ids(family: str, index: int) -> list[str]:
    if family == "subjects":
        return [f"MIROCALS-FR09-{9900 + index}", f"MIROCALS-FR09-{9950 + index}"]
    return [f"PIIROW{index:02d}{n}" for n in "AB"]


PII_CASES = {column: _pii_file(i, column) for i, column in enumerate(PERSONAL)}


def write_pii_landing(landing: Path) -> None:
    write_reference(landing, {"SWB01": MANIFEST["SWB01"], "SNV01": MANIFEST["SNV01"]})
    write_delivery(landing, "treg", "treg_batch01.parquet", [_treg("SWB01", cd4=777.0)])
    write_delivery(landing, "neurofilament", "nf_batch01.parquet", [nf("SNV01", "33.3")])
    for index, (column, (type_, value)) in enumerate(PERSONAL.items()):
        family, name = _pii_file(index, column)
        rows = [{**row, column: value} for row in _pii_rows(family, index)]
        write_delivery(landing, family, name, rows, **{column: type_})


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.__dict__}")


@contextmanager
def everything_printed_or_logged():
    """Like capfd + caplog for a module-scoped fixture: the process's stdout and stderr at file
    descriptor level and every log record (root and dagster loggers, any level)."""
    sink = tempfile.TemporaryFile(mode="w+b")
    stream = open(sink.fileno(), "w", encoding="utf-8", closefd=False, buffering=1)
    records = _Records()
    loggers = [logging.getLogger(), logging.getLogger("dagster")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(records)
        lg.setLevel(logging.DEBUG)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    captured: dict[str, str] = {}
    try:
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        with redirect_stdout(stream), redirect_stderr(stream):
            yield captured
    finally:
        stream.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        for lg, level in zip(loggers, levels):
            lg.removeHandler(records)
            lg.setLevel(level)
        sink.seek(0)
        captured["output"] = sink.read().decode("utf-8", "replace")
        captured["logs"] = "\n".join(records.lines)
        stream.close()
        sink.close()


@pytest.fixture(scope="module")
def pii(tmp_path_factory):
    landing = tmp_path_factory.mktemp("pii_landing")
    write_pii_landing(landing)
    warehouse = tmp_path_factory.mktemp("pii_warehouse") / "mirocals.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    with everything_printed_or_logged() as captured:
        result = build_warehouse(landing, warehouse, instance=instance, log_level="DEBUG")
    assert result.success, captured.get("output", "")[-3000:]
    events = "\n".join(dg.serialize_value(entry) for entry in instance.all_logs(result.run_id))
    stored = {path: (warehouse_text(path), path.read_bytes()) for path in (warehouse, work_file(warehouse))}
    return Built(landing, warehouse, result), captured["output"], captured["logs"], events, stored


def test_the_scan_finds_what_is_stored(pii):
    """Positive control: the scans below see stored values, printed log lines and events."""
    built, output, logs, events, stored = pii
    for text, _ in stored.values():
        assert "core.treg.reported_result" in columns_containing(text, "777.0")
        assert "raw.treg.sample_id" in columns_containing(text, "SWB01")
        assert "raw.sample_manifest.collection_datetime" in columns_containing(text, "2018-01-10 09:00:00")
        assert "(column comments)" in columns_containing(text, "Biobank sample identifier")
    assert "'patient_name' look like personal data" in output
    assert "'patient_name' look like personal data" in events
    assert "raw__treg" in logs + output


@pytest.mark.parametrize("column", sorted(PERSONAL))
def test_file_with_personal_data_is_refused_whole(pii, column):
    built = pii[0]
    family, name = PII_CASES[column]
    folder = {"treg": "labs/treg", "neurofilament": "labs/neurofilament",
              "transcript_summary": "labs/transcript_summary", "transcript_gene": "labs/transcript_gene",
              "sample_manifest": "reference/sample_manifest", "subjects": "reference/subjects"}[family]
    file_name = f"{folder}/{name}"
    records = built.dicts("select * from audit.reconciliation where file_name = ?", [file_name])
    assert len(records) == 1, f"{file_name} has no reconciliation record"
    record = records[0]
    assert (record["status"], record["rule"]) == ("rejected", "no_personal_data"), record
    assert record["reason"] == (
        f"{file_name}: column(s) {column!r} look like personal data; deliveries must carry pseudonymised "
        "identifiers only. The file is refused and none of its values was stored."
    )
    assert (record["rows_delivered"], record["rows_loaded"], record["rows_quarantined"], record["balanced"]) == (2, 0, 2, True)
    assert built.scalar("select count(*) from quarantine.rejected_files where file_name = ? and rule = 'no_personal_data'",
                        [file_name]) == 1


@pytest.mark.parametrize("column", sorted(PERSONAL))
def test_no_value_of_a_file_with_personal_data_is_stored_or_logged(pii, column):
    built, output, logs, events, stored = pii
    family, name = PII_CASES[column]
    index = list(PERSONAL).index(column)
    planted = [str(PERSONAL[column][1]), *_planted_ids(family, index)]
    for value in planted:
        for path, (text, data) in stored.items():
            assert columns_containing(text, value) == [], f"{value!r} stored in {path}"
            assert value.encode() not in data, f"{value!r} in the bytes of {path}"
        assert value not in output, f"{value!r} printed during the build"
        assert value not in logs, f"{value!r} logged during the build"
        assert value not in events, f"{value!r} in the Dagster event log"


def test_valid_deliveries_next_to_personal_data_load(pii):
    built = pii[0]
    assert built.rows("select sample_id, aval from core.treg where paramcd = 'CD4CNT'") == [("SWB01", 777.0)]
    assert built.rows("select sample_id, aval from core.neurofilament") == [("SNV01", 33.3)]
    assert built.scalar("select count(*) from core.subject") == 5
    assert built.scalar("select bool_and(coalesce(balanced, false)) from audit.reconciliation") is True


def test_two_columns_whose_names_differ_only_in_case_are_refused(tmp_path):
    from pipelines.ingest.delivery import DeliveryRejected, check_delivery

    path = write_delivery(tmp_path, "treg", "treg_batch01.parquet", [treg("S002", CD4_Count=1.0)], CD4_Count=pa.float64())
    with pytest.raises(DeliveryRejected) as refused:
        check_delivery(path, "labs/treg/treg_batch01.parquet", load_contracts()["treg"])
    assert refused.value.rule == "unique_column_names"
    assert "column(s) 'cd4_count', 'CD4_Count' appear more than once or differ only in case" in str(refused.value)


def test_personal_data_inside_a_struct_column_is_refused(tmp_path):
    from pipelines.ingest.delivery import DeliveryRejected, check_delivery

    patient = pa.struct([("name", pa.string()), ("dob", pa.date32()), ("visits", pa.int32())])
    path = write_delivery(tmp_path, "treg", "treg_batch01.parquet",
                          [treg("S002", details={"name": "Jean Dupont", "dob": dt.date(1950, 1, 2), "visits": 3})],
                          details=patient)
    with pytest.raises(DeliveryRejected) as refused:
        check_delivery(path, "labs/treg/treg_batch01.parquet", load_contracts()["treg"])
    assert refused.value.rule == "no_personal_data"
    assert "column(s) 'details.name', 'details.dob' look like personal data" in str(refused.value)
    assert "Dupont" not in str(refused.value)


@pytest.mark.parametrize("column", ["patient_name", "patient_dob"])
def test_check_refuses_personal_data_without_printing_it(pii, wide_cli, column):
    built = pii[0]
    family, name = PII_CASES[column]
    path = next(built.landing.rglob(name))
    before = sha256(built.warehouse)
    result = _check(wide_cli, path, built.warehouse)
    assert result.exit_code == 1, result.output
    assert f"REFUSED ({family}) {name}: column(s) {column!r} look like personal data" in " ".join(result.output.split())
    assert str(PERSONAL[column][1]) not in result.output
    assert sha256(built.warehouse) == before


def test_extra_columns_needing_quotes_and_256_bit_decimals_are_kept(bad):
    rows = bad.rows("select cd4_count, extra_columns from raw.treg where file_name = ?", [ODD_EXTRA_FILE])
    assert [(cd4, sorted(json.loads(extra))) for cd4, extra in rows] == [(910.0, ['comment "lab"', "x_dec"])]
    assert _reconciliation(bad, ODD_EXTRA_FILE)["balanced"]


def test_files_outside_every_family_folder_are_listed_not_taken_in(bad):
    listed = bad.rows("select file_name, reason from quarantine.unrecognised_files order by 1")
    assert [name for name, _ in listed] == sorted(UNRECOGNISED)
    assert all("not in a delivery family's folder (reference/subjects, " in reason for _, reason in listed)
    assert bad.scalar("select count(*) from audit.delivery where file_name in (select unnest(?::varchar[]))",
                      [UNRECOGNISED]) == 0
    assert "quarantine/unrecognised_files:every_file_in_a_family_folder" in bad.result.failed_checks


def test_a_32_or_16_bit_float_is_stored_as_the_decimal_it_holds(tmp_path):
    """A float32 column holds 668.1 as 668.0999755859375: stored as that, the value would differ
    from the same result delivered later as float64, and read as a correction."""
    landing = tmp_path / "landing"
    write_reference(landing, MANIFEST)
    first = write_delivery(landing, "treg", "treg_batch01.parquet", [_treg("SWB01", cd4=668.1), _treg("SWB03", cd4=0.1)])
    _replace_column(first, "cd4_count", pq.read_table(first)["cd4_count"].cast(pa.float32()))
    assert pq.read_table(first).schema.field("cd4_count").type == pa.float32()
    built = run_build(landing, tmp_path / "wh" / "m.duckdb")
    assert sorted(built.rows("select sample_id, cd4_count from raw.treg")) == [("SWB01", 668.1), ("SWB03", 0.1)]

    write_delivery(landing, "treg", "treg_batch02.parquet", [_treg("SWB01", cd4=668.1)])
    again = run_build(landing, tmp_path / "wh" / "m.duckdb")
    # the same result again: the correction shows the same value before and after
    assert again.rows("select record_key, superseded_values->>'cd4_count', replacing_values->>'cd4_count' "
                      "from audit.correction where family = 'treg'") == [("SWB01", "668.1", "668.1")]

    # a 16-bit float, which DuckDB does not read from Arrow, the same way
    half = write_delivery(landing, "treg", "treg_batch03.parquet", [_treg("SWB03", cd4=0.1)])
    _replace_column(half, "cd4_count", pq.read_table(half)["cd4_count"].cast(pa.float16()))
    assert pq.read_table(half).schema.field("cd4_count").type == pa.float16()
    third = run_build(landing, tmp_path / "wh" / "m.duckdb")
    assert third.rows("select status, cd4_count from audit.delivery join raw.treg using (delivery_id) "
                      "where delivery.file_name like '%batch03%'") == [("accepted", 0.1)]


def test_the_build_summary_counts_held_back_rows_refused_files_and_duplicates_apart(tmp_path):
    from pipelines.build import summarise

    landing = tmp_path / "landing"
    write_reference(landing, MANIFEST)
    first = write_delivery(landing, "treg", "treg_batch01.parquet", [_treg("SWB01"), _treg("SWB404")])
    (first.parent / "treg_batch01_sent_twice.parquet").write_bytes(first.read_bytes())
    refused = write_delivery(landing, "treg", "treg_batch02.parquet", [_treg("SWB03"), _treg("SWB01")])
    _replace_column(refused, "cd4_count", pa.array([True, False]))
    built = run_build(landing, tmp_path / "wh" / "m.duckdb")

    summary = {family: rest for family, *rest in summarise(built.warehouse)}
    assert summary["treg"] == [3, 6, 1, 1, 1, 1, True]  # files, delivered, loaded, held back, refused, duplicates
    for family, (files, _, loaded, held, refused, duplicates, _) in summary.items():
        assert files == built.scalar("select count(*) from audit.delivery where family = ?", [family])
        assert held == built.scalar("select count(*) from quarantine.rejected_rows where family = ?", [family])
        assert refused == built.scalar(
            "select count(*) from audit.delivery where family = ? and status = 'rejected'", [family])
        assert duplicates == built.scalar(
            "select count(*) from audit.delivery where family = ? and status = 'duplicate'", [family])
