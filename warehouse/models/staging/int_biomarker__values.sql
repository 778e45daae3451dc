-- Every current per-sample biomarker value (Treg, neurofilament, RNA-seq summaries) in one long
-- shape, the input of the ADaM derivations. Censoring columns are empty where they do not apply.
select
    usubjid, armcd, arm, visit_code, visit_num, sample_id, collection_date, study_day,
    paramcd, param, aval, aval_unit, reported_result,
    false as blq_flag, false as alq_flag, cast(null as double) as lloq, cast(null as double) as uloq,
    'core.treg' as core_table, delivery_id, file_name, row_number
from core.treg
union all
select
    usubjid, armcd, arm, visit_code, visit_num, sample_id, collection_date, study_day,
    paramcd, param, aval, aval_unit, reported_result,
    blq_flag, alq_flag, lloq, uloq,
    'core.neurofilament' as core_table, delivery_id, file_name, row_number
from core.neurofilament
union all
select
    usubjid, armcd, arm, visit_code, visit_num, sample_id, collection_date, study_day,
    paramcd, param, aval, aval_unit, reported_result,
    false as blq_flag, false as alq_flag, cast(null as double) as lloq, cast(null as double) as uloq,
    'core.transcript_summary' as core_table, delivery_id, file_name, row_number
from core.transcript_summary
