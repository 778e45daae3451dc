-- One row per RNA-seq per-sample measure (reads, mapping rate, RIN, Treg signature score),
-- linked to subject, arm and visit. Only the current (newest valid) row per sample.
with

measured as (
    unpivot (
        select * from staging.stg_lab__transcript_summary where is_current
    )
    on total_reads_m, pct_mapped, rin, treg_signature
    into name source_column value reported_value
),

final as (
    select
        -- subject, arm and visit
        sample.usubjid,
        sample.armcd,
        sample.arm,
        sample.visit_code,
        sample.visit_num,
        sample.sample_id,
        sample.collection_date,
        sample.study_day,

        -- the value
        parameter.paramcd,
        parameter.param,
        measured.reported_value * unit.factor       as aval,
        parameter.unit                              as aval_unit,
        cast(measured.reported_value as varchar)    as reported_result,
        parameter.unit                              as reported_unit,
        measured.run_id,

        -- provenance
        measured.delivery_id,
        measured.file_name,
        measured.row_number
    from measured
    join ref.parameter as parameter
        on parameter.family = 'transcript_summary' and parameter.source_column = measured.source_column
    join ref.parameter_unit as unit
        on unit.paramcd = parameter.paramcd and unit.unit_reported = parameter.unit
    join core.sample as sample using (sample_id)
)

select * from final
