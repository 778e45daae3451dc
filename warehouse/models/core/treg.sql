-- One row per Treg flow cytometry value (CD4 count, Treg count, %Treg of CD4), linked to
-- subject, arm and visit. Only the current (newest valid) result per sample.
with

measured as (
    unpivot (
        select * from staging.stg_lab__treg where is_current
    )
    on cd4_count, treg_count, treg_pct_cd4
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
        measured.panel_version,
        measured.acquisition_date,

        -- provenance
        measured.delivery_id,
        measured.file_name,
        measured.row_number
    from measured
    join ref.parameter as parameter
        on parameter.family = 'treg' and parameter.source_column = measured.source_column
    join ref.parameter_unit as unit
        on unit.paramcd = parameter.paramcd and unit.unit_reported = parameter.unit
    join core.sample as sample using (sample_id)
)

select * from final
