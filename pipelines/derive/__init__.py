"""CDISC ADaM derivations (ADBM, ADSL, ADGENE's samples) as small pure functions on polars DataFrames, admiral style.

Rules come from the study definition through arguments; the `create_*` templates chain the
derivations in the order a statistician reads them. Callers fill the arguments from
``pipelines.study.load_study()`` (visits, arms, ``analysis`` rules).
"""

from pipelines.derive.adbm import ADBM_COLUMNS, CORE_TO_ADAM, create_adbm, rename_core_to_adam
from pipelines.derive.adgene import ADGENE_SAMPLE_COLUMNS, create_adgene_samples
from pipelines.derive.adsl import (
    ADSL_COLUMNS,
    compute_pnfh_stratum,
    create_adsl,
    derive_var_baseline_of,
    derive_var_pnfh_stratum,
    derive_var_responder,
)
from pipelines.derive.bds import (
    arm_numbers,
    assert_windows_disjoint,
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
from pipelines.derive.checks import MissingColumnsError, assert_columns

__all__ = [
    "ADBM_COLUMNS",
    "ADGENE_SAMPLE_COLUMNS",
    "ADSL_COLUMNS",
    "CORE_TO_ADAM",
    "MissingColumnsError",
    "arm_numbers",
    "assert_columns",
    "assert_windows_disjoint",
    "baseline_window",
    "compute_pnfh_stratum",
    "create_adbm",
    "create_adgene_samples",
    "create_adsl",
    "derive_var_ablfl",
    "derive_var_anl01fl",
    "derive_var_base",
    "derive_var_baseline_of",
    "derive_var_chg",
    "derive_var_pchg",
    "derive_var_pnfh_stratum",
    "derive_var_r2base",
    "derive_var_responder",
    "derive_var_trtp",
    "derive_vars_avisit",
    "derive_vars_blq",
    "derive_vars_dt_dy",
    "derive_vars_merged",
    "rename_core_to_adam",
]
