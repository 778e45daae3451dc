-- One row per valid biobank sample, linked to subject, arm and visit.
select
    sample.sample_id,
    sample.usubjid,
    subject.armcd,
    subject.arm,
    sample.visit_code,
    sample.visit_num,
    sample.matrix,
    sample.collection_datetime,
    sample.collection_date,
    sample.study_day,
    sample.delivery_id,
    sample.file_name,
    sample.row_number
from staging.stg_biobank__sample as sample
join core.subject as subject using (usubjid)
where sample.is_current
