"""Every derivation names the required columns it was not given."""

import polars as pl
import pytest

from pipelines.derive import (
    MissingColumnsError,
    create_adbm,
    create_adsl,
    derive_var_ablfl,
    derive_var_anl01fl,
    derive_var_base,
    derive_var_chg,
    derive_var_pchg,
    derive_var_r2base,
    derive_var_responder,
    derive_var_trtp,
    derive_vars_avisit,
    derive_vars_blq,
    derive_vars_dt_dy,
)

ONLY_SUBJECT = pl.DataFrame({"USUBJID": ["S1"], "PARAMCD": ["NFLS"]})
SUBJECT = pl.DataFrame({"usubjid": ["S1"], "armcd": ["IL2"], "arm": ["ld-IL-2"]})
RULE = {"paramcd": "TREGPCT", "visit_code": "M3", "r2base_threshold": 1.5}

CASES = [
    ("derive_vars_dt_dy", lambda: derive_vars_dt_dy(ONLY_SUBJECT), ["collection_date", "study_day"]),
    ("derive_vars_avisit", lambda: derive_vars_avisit(ONLY_SUBJECT, []), ["ADY"]),
    ("derive_vars_blq", lambda: derive_vars_blq(ONLY_SUBJECT, "LLOQ/2", 0.5),
     ["AVAL", "reported_result", "blq_flag", "alq_flag", "lloq", "uloq"]),
    ("derive_var_ablfl", lambda: derive_var_ablfl(ONLY_SUBJECT), ["AVAL", "ADY", "SRCDLVID", "SRCROW"]),
    ("derive_var_base", lambda: derive_var_base(ONLY_SUBJECT), ["AVAL", "ABLFL"]),
    ("derive_var_chg", lambda: derive_var_chg(ONLY_SUBJECT), ["AVAL", "BASE", "ADY"]),
    ("derive_var_pchg", lambda: derive_var_pchg(ONLY_SUBJECT), ["CHG", "BASE"]),
    ("derive_var_r2base", lambda: derive_var_r2base(ONLY_SUBJECT), ["AVAL", "BASE", "ADY"]),
    ("derive_var_anl01fl", lambda: derive_var_anl01fl(ONLY_SUBJECT), ["AVISIT", "AVAL", "ADY", "AWTARGET"]),
    ("derive_var_trtp (subject)", lambda: derive_var_trtp(ONLY_SUBJECT, SUBJECT.drop("arm"), ["IL2"]), ["arm"]),
    ("derive_var_responder (adbm)", lambda: derive_var_responder(ONLY_SUBJECT, ONLY_SUBJECT, "TREGPCT", "M3", 1.5),
     ["AVISIT", "ANL01FL", "R2BASE"]),
    ("rename_core_to_adam", lambda: create_adbm(ONLY_SUBJECT, SUBJECT.with_columns(siteid=pl.lit("FR01")),
                                                [], ["IL2"], "LLOQ/2", 0.5, "MIROCALS", ratio_params=[]),
     ["usubjid", "paramcd", "aval", "core_table", "delivery_id", "row_number", "study_day"]),
    ("create_adsl (subject)", lambda: create_adsl(SUBJECT, ONLY_SUBJECT, "MIROCALS", "PNFHC", "NFLS", 3700, RULE, ["IL2"], 0.5),
     ["siteid", "randomisation_date", "randomised"]),
]  # fmt: skip


@pytest.mark.parametrize(("function", "call", "named"), CASES, ids=[c[0] for c in CASES])
def test_missing_required_columns_are_named(function, call, named):
    with pytest.raises(MissingColumnsError) as raised:
        call()
    message = str(raised.value)
    assert message.startswith(f"{function}: missing required column(s): ")
    for column in named:
        assert column in raised.value.missing
    assert "USUBJID" not in raised.value.missing  # only what is actually missing is named
