"""The ADBM and ADSL templates end to end on a small core table, and traceability to the input."""

from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.derive import (
    ADBM_COLUMNS, ADGENE_SAMPLE_COLUMNS, ADSL_COLUMNS, create_adbm, create_adgene_samples, create_adsl,
)
from pipelines.study import load_study


def frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


def on_day(randomisation: date, day: int) -> date:
    """Calendar date of a study day (day 1 = randomisation, no day 0)."""
    return randomisation + timedelta(days=day - 1 if day > 0 else day)


S1, S2, S3 = "MIROCALS-FR01-0001", "MIROCALS-UK02-0002", "MIROCALS-FR03-0003"
R1, R2 = date(2020, 1, 10), date(2020, 2, 1)
IL2, PBO = "ld-IL-2 + riluzole", "placebo + riluzole"

VISITS = [
    {"visit_code": "SCREEN", "visit_num": 0, "study_day": -90, "window_lo": -126, "window_hi": -60},
    {"visit_code": "BASELINE", "visit_num": 1, "study_day": 1, "window_lo": -14, "window_hi": 1},
    {"visit_code": "M1", "visit_num": 2, "study_day": 29, "window_lo": 24, "window_hi": 34},
    {"visit_code": "M3", "visit_num": 4, "study_day": 85, "window_lo": 78, "window_hi": 92},
    {"visit_code": "M9", "visit_num": 6, "study_day": 253, "window_lo": 239, "window_hi": 267},
    {"visit_code": "M12", "visit_num": 7, "study_day": 337, "window_lo": 323, "window_hi": 351},
]
ARMS = [{"armcd": "IL2", "arm": IL2}, {"armcd": "PBO", "arm": PBO}]
RULE = {"paramcd": "TREGPCT", "visit_code": "M3", "r2base_threshold": 1.5}

SUBJECT = frame(
    {"usubjid": pl.String, "siteid": pl.String, "country": pl.String, "sex": pl.String, "age": pl.Int32,
     "onset": pl.String, "stratum": pl.String, "randomisation_date": pl.Date, "randomised": pl.Boolean,
     "death_date": pl.Date, "withdrawal_date": pl.Date, "withdrawal_reason": pl.String,
     "armcd": pl.String, "arm": pl.String},
    [
        (S1, "FR01", "FRA", "M", 61, "LIMB", "FRA-LIMB", R1, True, None, None, None, "IL2", IL2),
        (S2, "UK02", "GBR", "F", 55, "BULBAR", "GBR-BULBAR", R2, True, date(2021, 1, 1), None, None, "PBO", PBO),
        (S3, "FR03", "FRA", "F", 70, "LIMB", "FRA-LIMB", None, False, None, date(2019, 12, 1), "Screen failure",
         None, None),
    ],
)  # fmt: skip

NF, TR = "core.neurofilament", "core.treg"
# usubjid, rand date, visit_code, day, paramcd, aval, reported, blq, lloq, core_table, delivery_id, row_number
MEASURED = [
    (S1, R1, "SCREEN", -90, "NFLS", 50.0, "50.0", False, 3.0, NF, 10, 1),
    (S1, R1, "BASELINE", -2, "NFLS", None, "<3.0", True, 3.0, NF, 10, 2),
    (S1, R1, "M3", 85, "NFLS", 6.0, "6.0", False, 3.0, NF, 10, 3),
    (S1, R1, "BASELINE", -2, "PNFHC", 3700.0, "3700", False, 50.0, NF, 10, 4),
    (S1, R1, "BASELINE", 1, "TREGPCT", 5.0, "5.0", None, None, TR, 20, 1),
    (S1, R1, "BASELINE", 1, "CD4CNT", 800.0, "800", None, None, TR, 20, 1),  # same delivered row
    (S1, R1, "M3", 86, "TREGPCT", 9.0, "9.0", None, None, TR, 20, 2),
    (S1, R1, "M3", 86, "CD4CNT", 900.0, "900", None, None, TR, 20, 2),
    (S2, R2, "BASELINE", 1, "NFLS", 60.0, "60", False, 3.0, NF, 11, 1),
    (S2, R2, "BASELINE", 1, "NFLS", 62.0, "62", False, 3.0, NF, 12, 4),  # same day, later delivery
    (S2, R2, "M12", 300, "NFLS", 70.0, "70", False, 3.0, NF, 11, 2),  # labelled M12, in no window
    (S2, R2, "BASELINE", 1, "PNFHC", 5000.0, "5000", False, 50.0, NF, 11, 3),
    (S2, R2, "BASELINE", 1, "TREGPCT", 5.0, "5.0", None, None, TR, 21, 1),
    (S2, R2, "M3", 85, "TREGPCT", 5.5, "5.5", None, None, TR, 21, 2),
]
CORE = frame(
    {"usubjid": pl.String, "armcd": pl.String, "arm": pl.String, "visit_code": pl.String, "visit_num": pl.Int32,
     "sample_id": pl.String, "collection_date": pl.Date, "study_day": pl.Int32, "paramcd": pl.String,
     "param": pl.String, "aval": pl.Float64, "aval_unit": pl.String, "blq_flag": pl.Boolean, "alq_flag": pl.Boolean,
     "lloq": pl.Float64, "uloq": pl.Float64, "reported_result": pl.String, "delivery_id": pl.Int64,
     "file_name": pl.String, "row_number": pl.Int64, "core_table": pl.String},
    [
        (u, None, None, visit, None, f"SMP-{u[-4:]}-{visit}-{paramcd}", on_day(rand, day), day, paramcd,
         f"{paramcd} description", aval, "unit", blq, None if blq is None else False, lloq,
         None if lloq is None else 1000.0 * lloq, reported, dlv, f"{table}/{dlv}.parquet", row, table)
        for u, rand, visit, day, paramcd, aval, reported, blq, lloq, table, dlv, row in MEASURED
    ],
)  # fmt: skip


# every parameter of the test data is on a ratio scale (percent change and ratio to baseline)
RATIO_PARAMS = sorted(set(CORE.get_column("paramcd").to_list()))


@pytest.fixture(scope="module")
def adbm() -> pl.DataFrame:
    return create_adbm(CORE, SUBJECT, VISITS, ARMS, "LLOQ/2", 0.5, "MIROCALS", ratio_params=RATIO_PARAMS)


@pytest.fixture(scope="module")
def adsl(adbm) -> pl.DataFrame:
    return create_adsl(SUBJECT, adbm, "MIROCALS", "PNFHC", "NFLS", 3700, RULE, ARMS, 0.5)


def test_adbm_columns_in_adam_order(adbm):
    assert adbm.columns == list(ADBM_COLUMNS)
    assert adbm.height == CORE.height


def test_adbm_values(adbm):
    keys = ["SRCTBL", "SRCDLVID", "SRCROW", "PARAMCD"]
    checked = ["USUBJID", "PARAMCD", "SRCTBL", "SRCDLVID", "SRCROW", "TRTPN", "AVAL", "IMPUTFL", "ADY", "VISIT",
               "AVISIT", "ABLFL", "BASE", "CHG", "R2BASE", "ANL01FL"]  # fmt: skip
    schema = {"USUBJID": pl.String, "PARAMCD": pl.String, "SRCTBL": pl.String, "SRCDLVID": pl.Int64,
              "SRCROW": pl.Int64, "TRTPN": pl.Int64, "AVAL": pl.Float64, "IMPUTFL": pl.String, "ADY": pl.Int64,
              "VISIT": pl.String, "AVISIT": pl.String, "ABLFL": pl.String, "BASE": pl.Float64,
              "CHG": pl.Float64, "R2BASE": pl.Float64, "ANL01FL": pl.String}  # fmt: skip
    expected = frame(schema, [
        (S1, "NFLS", NF, 10, 1, 1, 50.0, None, -90, "SCREEN", "SCREEN", None, 1.5, None, None, "Y"),
        (S1, "NFLS", NF, 10, 2, 1, 1.5, "Y", -2, "BASELINE", "BASELINE", "Y", 1.5, None, None, "Y"),
        (S1, "NFLS", NF, 10, 3, 1, 6.0, None, 85, "M3", "M3", None, 1.5, 4.5, 4.0, "Y"),
        (S1, "PNFHC", NF, 10, 4, 1, 3700.0, None, -2, "BASELINE", "BASELINE", "Y", 3700.0, None, None, "Y"),
        (S1, "TREGPCT", TR, 20, 1, 1, 5.0, None, 1, "BASELINE", "BASELINE", "Y", 5.0, None, None, "Y"),
        (S1, "CD4CNT", TR, 20, 1, 1, 800.0, None, 1, "BASELINE", "BASELINE", "Y", 800.0, None, None, "Y"),
        (S1, "TREGPCT", TR, 20, 2, 1, 9.0, None, 86, "M3", "M3", None, 5.0, 4.0, 1.8, "Y"),
        (S1, "CD4CNT", TR, 20, 2, 1, 900.0, None, 86, "M3", "M3", None, 800.0, 100.0, 1.125, "Y"),
        (S2, "NFLS", NF, 11, 1, 2, 60.0, None, 1, "BASELINE", "BASELINE", None, 62.0, None, None, None),
        (S2, "NFLS", NF, 12, 4, 2, 62.0, None, 1, "BASELINE", "BASELINE", "Y", 62.0, None, None, "Y"),
        (S2, "NFLS", NF, 11, 2, 2, 70.0, None, 300, "M12", None, None, 62.0, 8.0, 70.0 / 62.0, None),
        (S2, "PNFHC", NF, 11, 3, 2, 5000.0, None, 1, "BASELINE", "BASELINE", "Y", 5000.0, None, None, "Y"),
        (S2, "TREGPCT", TR, 21, 1, 2, 5.0, None, 1, "BASELINE", "BASELINE", "Y", 5.0, None, None, "Y"),
        (S2, "TREGPCT", TR, 21, 2, 2, 5.5, None, 85, "M3", "M3", None, 5.0, 0.5, 1.1, "Y"),
    ])  # fmt: skip
    assert_frame_equal(adbm.select(checked).sort(keys), expected.sort(keys))
    assert adbm.get_column("STUDYID").unique().to_list() == ["MIROCALS"]
    assert dict(adbm.select("USUBJID", "SITEID").unique().iter_rows()) == {S1: "FR01", S2: "UK02"}
    assert adbm.filter(pl.col("IMPUTFL") == "Y").select("AVALC", "BLQFL", "IMPUTRL").rows() == [("<3.0", "Y", "LLOQ/2")]


def test_every_adbm_row_traces_back_to_exactly_one_core_row(adbm):
    # One delivered flow cytometry row carries several parameters (CD4CNT, TREGCNT, TREGPCT), so
    # the trace key is SRCTBL x SRCDLVID x SRCROW within a parameter.
    trace = ["SRCTBL", "SRCDLVID", "SRCROW", "PARAMCD"]
    assert adbm.select(trace).null_count().row(0) == (0, 0, 0, 0)
    assert not adbm.select(trace).is_duplicated().any()
    source = CORE.select(
        pl.col("core_table").alias("SRCTBL"), pl.col("delivery_id").alias("SRCDLVID"),
        pl.col("row_number").alias("SRCROW"), pl.col("paramcd").alias("PARAMCD"),
        pl.col("file_name"), pl.col("sample_id"), pl.col("collection_date"), pl.col("usubjid"),
    )  # fmt: skip
    joined = adbm.join(source, on=trace, how="left", validate="1:1")
    assert joined.height == CORE.height
    assert joined.filter(
        (pl.col("SRCFILE") != pl.col("file_name"))
        | (pl.col("SAMPLEID") != pl.col("sample_id"))
        | (pl.col("ADT") != pl.col("collection_date"))
        | (pl.col("USUBJID") != pl.col("usubjid"))
    ).is_empty()


def test_adsl_one_row_per_subject(adsl):
    expected = frame(
        {"STUDYID": pl.String, "USUBJID": pl.String, "SUBJID": pl.String, "SITEID": pl.String,
         "COUNTRY": pl.String, "ONSET": pl.String, "SEX": pl.String, "AGE": pl.Int64, "AGEU": pl.String,
         "RANDDT": pl.Date, "STRATAR": pl.String, "STRAT1R": pl.String, "STRAT2R": pl.String,
         "ARMCD": pl.String, "ARM": pl.String, "ACTARMCD": pl.String, "ACTARM": pl.String, "TRT01P": pl.String, "TRT01A": pl.String, "TRT01PN": pl.Int64, "ITTFL": pl.String, "DTHDT": pl.Date,
         "DTHFL": pl.String, "WDDT": pl.Date, "WDREAS": pl.String, "BNFLS": pl.Float64, "BPNFHC": pl.Float64,
         "PNFHSTR": pl.String, "TRRESPFL": pl.String},
        [
            ("MIROCALS", S1, "FR01-0001", "FR01", "FRA", "LIMB", "M", 61, "YEARS", R1, "FRA-LIMB", "FRA", "LIMB",
             "IL2", IL2, "IL2", IL2, IL2, IL2, 1, "Y", None, None, None, None, 1.5, 3700.0, "LOW", "Y"),
            ("MIROCALS", S2, "UK02-0002", "UK02", "GBR", "BULBAR", "F", 55, "YEARS", R2, "GBR-BULBAR", "GBR", "BULBAR",
             "PBO", PBO, "PBO", PBO, PBO, PBO, 2, "Y", date(2021, 1, 1), "Y", None, None, 62.0, 5000.0, "HIGH", "N"),
            ("MIROCALS", S3, "FR03-0003", "FR03", "FRA", "LIMB", "F", 70, "YEARS", None, "FRA-LIMB", "FRA", "LIMB",
             "NOTASSGN", "Not Assigned", "NOTASSGN", "Not Assigned", None, None, None, "N", None, None, date(2019, 12, 1), "Screen failure", None, None, None, None),
        ],
    )  # fmt: skip
    assert adsl.columns == list(ADSL_COLUMNS)
    assert_frame_equal(adsl.sort("USUBJID"), expected.sort("USUBJID"))


def test_templates_take_their_rules_from_the_study_definition():
    study = load_study()
    analysis = study.analysis
    blq = analysis["blq_imputation"]
    adbm = create_adbm(CORE, SUBJECT, study.visits, study.arms, blq["rule"], blq["factor"], study.studyid,
                       ratio_params=[p.paramcd for p in study.parameters if p.ratio_scale])
    adsl = create_adsl(SUBJECT, adbm, study.studyid, "PNFHC", "NFLS", analysis["pnfh_cutpoint_pgml"],
                       analysis["treg_responder"], study.arms, analysis["blq_imputation"]["factor"])  # fmt: skip
    assert adbm.height == CORE.height and adsl.height == SUBJECT.height
    assert adbm.filter(pl.col("IMPUTFL") == "Y").get_column("IMPUTRL").to_list() == [blq["rule"]]
    assert adsl.get_column("STUDYID").unique().to_list() == [study.studyid]


def test_adbm_takes_no_baseline_from_screening_when_the_baseline_sample_is_missing():
    no_baseline_sample = CORE.filter(~((pl.col("usubjid") == S1) & (pl.col("paramcd") == "NFLS")
                                       & (pl.col("visit_code") == "BASELINE")))
    adbm = create_adbm(no_baseline_sample, SUBJECT, VISITS, ARMS, "LLOQ/2", 0.5, "MIROCALS", ratio_params=RATIO_PARAMS)
    nfls = adbm.filter((pl.col("USUBJID") == S1) & (pl.col("PARAMCD") == "NFLS")).sort("ADY")
    assert nfls.select("AVISIT", "ABLFL", "BASE", "CHG").rows() == [("SCREEN", None, None, None),
                                                                     ("M3", None, None, None)]


def test_basec_shows_a_censored_baseline_that_base_holds_imputed(adbm):
    nfls = adbm.filter((pl.col("USUBJID") == S1) & (pl.col("PARAMCD") == "NFLS")).sort("ADY")
    assert nfls.select("AVISIT", "ABLFL", "BASE", "BASEC", "CHG").rows() == [
        ("SCREEN", None, 1.5, "<3.0", None), ("BASELINE", "Y", 1.5, "<3.0", None), ("M3", None, 1.5, "<3.0", 4.5)]
    measured = adbm.filter((pl.col("USUBJID") == S2) & (pl.col("PARAMCD") == "NFLS") & (pl.col("ABLFL") == "Y"))
    assert measured.select("BASE", "BASEC").rows() == [(62.0, "62.0")]


RNA_SAMPLE_SCHEMA = {"usubjid": pl.String, "sample_id": pl.String, "visit_code": pl.String,
                     "collection_date": pl.Date, "study_day": pl.Int32, "gene_rows": pl.Int64}


def test_adgene_samples_flag_one_rna_sample_per_subject_and_visit_window():
    samples = frame(
        RNA_SAMPLE_SCHEMA,
        [(S1, "R1", "BASELINE", on_day(R1, -3), -3, 20000),    # two RNA samples in the baseline window:
         (S1, "R2", "BASELINE", on_day(R1, 1), 1, 20000),      # day 1 is the target day
         (S1, "R3", "M3", on_day(R1, 80), 80, 20000),          # one each in M3's window, as far from day 85:
         (S1, "R4", "M3", on_day(R1, 90), 90, 20000),          # the later one
         (S2, "R5", "M3", on_day(R2, 300), 300, 20000)],       # in no window: never flagged
    )  # fmt: skip
    adgene = create_adgene_samples(samples, SUBJECT, VISITS, ARMS, "MIROCALS")
    assert adgene.columns == list(ADGENE_SAMPLE_COLUMNS)
    flags = dict(adgene.select("SAMPLEID", "ANL01FL").rows())
    assert flags == {"R1": None, "R2": "Y", "R3": None, "R4": "Y", "R5": None}
    # the baseline RNA sample: the last one in the baseline window; S2 has none
    assert dict(adgene.select("SAMPLEID", "ABLFL").rows()) == {"R1": None, "R2": "Y", "R3": None, "R4": None, "R5": None}


def test_the_baseline_rna_sample_is_within_the_baseline_window_up_to_day_1_and_sequenced():
    samples = frame(
        RNA_SAMPLE_SCHEMA,
        [(S1, "R0", "SCREEN", on_day(R1, -90), -90, 20000),    # before the run-in: never a baseline
         (S1, "R1", "BASELINE", on_day(R1, -5), -5, 20000),    # S1's last sample in the window with genes:
         (S1, "R2", "BASELINE", on_day(R1, 1), 1, 0),          # this tube was never sequenced
         (S2, "R6", "BASELINE", on_day(R2, -12), -12, 20000),  # S2's only sample in the window,
         (S2, "R7", "BASELINE", on_day(R2, 2), 2, 20000),      # then one after day 1, in no window
         (S2, "R8", "M3", on_day(R2, 85), 85, 20000)],
    )  # fmt: skip
    adgene = create_adgene_samples(samples, SUBJECT, VISITS, ARMS, "MIROCALS")
    assert dict(adgene.select("SAMPLEID", "ABLFL").rows()) == {
        "R0": None, "R1": "Y", "R2": None, "R6": "Y", "R7": None, "R8": None}


def test_adbm_needs_to_be_told_which_parameters_take_ratios():
    # a default of "every parameter" gave a z-score (TRSIG) a percent change and a ratio to baseline
    with pytest.raises(TypeError, match="ratio_params"):
        create_adbm(CORE, SUBJECT, VISITS, ARMS, "LLOQ/2", 0.5, "MIROCALS")
