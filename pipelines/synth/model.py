"""Assumptions of the synthetic generator's data model, kept in one place.

Everything the trial declares (sites, arms, strata, visits, windows, matrices, units,
LLOQ/ULOQ) is read from ``schemas/`` through :mod:`pipelines.study`. What is here is the
generator's own model of the population: shares, distributions and effect sizes chosen to
match the published MIROCALS facts and ALS cohort ranges in ``DESIGN.md``.
"""

from __future__ import annotations

from datetime import date

# --- Parameter codes the value model knows (declared in schemas/study.yaml) -------------
CD4CNT = "CD4CNT"
TREGCNT = "TREGCNT"
TREGPCT = "TREGPCT"
NFL_SERUM = "NFLS"
NFL_CSF = "NFLC"
PNFH_CSF = "PNFHC"
TREG_SIGNATURE = "TRSIG"

# --- Cohort --------------------------------------------------------------------------------
FRACTION_BULBAR = 0.30
FRACTION_MALE = 0.62
AGE_MEDIAN = 60.0
AGE_SD = 9.0
#: Per-site enrolment weights are lognormal; the country with most sites gets a boost so it
#: enrols more (France > UK).
SITE_WEIGHT_SIGMA = 0.45
LARGEST_COUNTRY_BOOST = 1.35
RANDOMISATION_PERIOD = (date(2017, 6, 1), date(2019, 10, 31))
RUNIN_DAYS = (84, 126)  # 12-18 weeks of riluzole alone
DIAGNOSIS_DAYS = (14, 720)  # diagnosis <= 24 months before consent
SEX_CODES = ("M", "F")

# --- Follow-up, deaths, withdrawals ------------------------------------------------------
FOLLOWUP_DAYS = 548  # registry primary endpoint: month 18
EXPORT_LAG_DAYS = 42  # reference exports are taken six weeks after the last follow-up
MIN_DEATH_DAY = 8
#: Exponential death hazard per day = BASE * exp(PROG_LOG_HR * progression z) * arm HR.
#: Calibrated so that ~45% of placebo and ~36% of ld-IL-2 subjects die by day 548.
DEATH_BASE_HAZARD = 1.024e-3
DEATH_PROG_LOG_HR = 0.7
ACTIVE_ARM_HR = {"low": 0.6, "high": 1.0, "missing": 0.8}  # by baseline CSF pNfH group
WITHDRAWAL_FRACTION = 0.05
WITHDRAWAL_DAYS = (30, 480)
WITHDRAWAL_REASONS = ("Withdrawal of consent", "Lost to follow-up")
WITHDRAWAL_REASON_P = (0.7, 0.3)
RUNIN_WITHDRAWAL_FRACTION = 0.4
RUNIN_WITHDRAWAL_REASON = "Withdrawal of consent during run-in"
RUNIN_WITHDRAWAL_DAYS = (14, 100)

# --- Sampling ------------------------------------------------------------------------------
MISSED_VISIT_P = 0.03
BASELINE_ON_DAY1_P = 0.8
FOLLOWUP_LP_P = 0.85  # lumbar puncture repeated at later CSF visits
CLINIC_OPEN_MIN = 8 * 60
CLINIC_SPAN_MIN = 8 * 60 + 30
PREDOSE_SPAN_MIN = 3 * 60
LP_DELAY_MIN = (30, 150)

# --- Latent disease course -----------------------------------------------------------------
BULBAR_PROGRESSION_SHIFT = 0.35  # bulbar onset progresses faster on average

# --- Treg flow cytometry ------------------------------------------------------------------------
CD4_MEDIAN = 800.0
CD4_SUBJECT_SIGMA = 0.25
CD4_VISIT_SIGMA = 0.12
TREG_PCT_MEDIAN = 5.0
TREG_PCT_PROG_SLOPE = -0.12  # fast progressors have somewhat fewer Tregs
TREG_PCT_SUBJECT_SIGMA = 0.20
TREG_PCT_VISIT_SIGMA = 0.12
IL2_RESPONDER_P = 0.9
IL2_FOLD_RESPONDER = 2.1
IL2_FOLD_NONRESPONDER = 1.15
IL2_FOLD_SUBJECT_SIGMA = 0.15
PANEL_VERSIONS = (("TREG-v1", date(1900, 1, 1)), ("TREG-v2", date(2018, 9, 1)))
ACQUISITION_LAG_DAYS = (0, 0, 1, 1, 2)
TREG_BATCHES = 6

# --- Neurofilaments --------------------------------------------------------------------------
NFL_SERUM_MEDIAN_LIMB = 60.0
NFL_SERUM_BULBAR_LOG = 0.15  # plus the faster progression of bulbar onset: median ~80
NFL_SERUM_PROG_LOG = 0.40
NFL_SERUM_SUBJECT_SIGMA = 0.38
NFL_SERUM_VISIT_SIGMA = 0.10
NFL_CSF_MEDIAN = 8000.0
NFL_CSF_PROG_LOG = 0.5
NFL_CSF_SUBJECT_SIGMA = 0.45
CSF_VISIT_SIGMA = 0.08
PNFH_MISSING_FRACTION = 0.09  # no baseline lumbar puncture
PNFH_HIGH_FRACTION = 0.21  # baseline CSF pNfH above the study's cut-point
PNFH_MEDIAN = 2500.0
PNFH_SIGMA = 0.52
PNFH_PROG_WEIGHT = 0.8
PNFH_NOISE_WEIGHT = 0.6
PNFH_FOLLOWUP_DRIFT = (0.02, 0.10)
SERUM_DILUTIONS = ((4.0, 0.95), (1.0, 0.05))
CSF_DILUTIONS = ((1.0, 0.90), (10.0, 0.10))
CV_MEDIAN = 5.0
CV_SIGMA = 0.45
PLATE_SAMPLES = 40
RUN_LAG_DAYS = 10
NFL_BATCHES = 4

# --- Transcriptomics ----------------------------------------------------------------------------
#: Treg signature genes: symbol -> (Ensembl id, mean log2 CPM, loading on log2 %Treg).
TREG_SIGNATURE_GENES = {
    "FOXP3": ("ENSG00000049768", 4.2, 0.85),
    "IL2RA": ("ENSG00000134460", 5.1, 0.95),
    "CTLA4": ("ENSG00000163599", 4.6, 0.70),
    "IKZF2": ("ENSG00000030419", 4.0, 0.60),
}
SIGNATURE_NOISE_SD = 0.25
GENE_MEAN = (5.5, 2.8)  # normal, clipped to 0..12
GENE_SD = (0.15, 0.6)  # uniform
LIBRARY_OFFSET_SD = 0.05
EXPRESSION_DECIMALS = 4
ENSEMBL_ID_MAX = 320_000
READS_M = (38.0, 9.0, 20.0, 60.0)  # mean, sd, clip lo, clip hi
PCT_MAPPED = (92.0, 2.5, 85.0, 97.0)
RIN = (8.0, 0.7, 6.0, 9.5)
RUN_SAMPLES = 48
GENE_ROW_GROUP_ROWS = 1_000_000

#: A few real gene symbols besides the signature; further genes are GENE00001, ...
REAL_GENE_SYMBOLS = (
    "ACTB", "GAPDH", "B2M", "PTPRC", "CD3E", "CD3D", "CD4", "CD8A", "CD8B", "CD19", "MS4A1",
    "CD14", "FCGR3A", "NCAM1", "KLRD1", "GZMB", "PRF1", "IFNG", "TNF", "IL1B", "IL6", "IL10",
    "IL7R", "IL2RB", "IL2RG", "CCR4", "CCR7", "SELL", "TIGIT", "LAG3", "PDCD1", "HAVCR2",
    "TNFRSF4", "TNFRSF9", "TNFRSF18", "ENTPD1", "NT5E", "LRRC32", "IKZF4", "STAT5A", "STAT5B",
    "JAK1", "JAK3", "SOCS1", "SOCS3", "CISH", "BCL2", "MKI67", "TOP2A", "HLA-DRA", "HLA-A",
    "HLA-B", "HLA-C", "CD74", "LYZ", "S100A8", "S100A9", "HBB", "HBA1", "HBA2", "ALAS2",
    "NEFL", "NEFH", "CHI3L1", "CHIT1", "GFAP", "SOD1", "TARDBP", "FUS", "C9orf72", "TBK1",
    "OPTN", "SQSTM1", "VCP", "UBQLN2", "ATXN2", "TREM2", "APOE", "CX3CR1", "ITGAM", "CSF1R",
    "RPLP0", "RPL13A", "RPS18", "EEF1A1", "TBP", "HPRT1", "PPIA", "YWHAZ", "UBC", "SDHA",
    "PGK1", "TFRC", "GUSB", "HMBS", "POLR2A", "NFKB1", "RELA", "MYC", "JUN", "FOS", "EGR1",
)
