-- One row per neurofilament result (serum NfL, CSF NfL, CSF pNfH) in pg/mL, linked to
-- subject, arm and visit. Results below the LLOQ or above the ULOQ are kept and flagged,
-- with aval left empty: any imputation is a named rule of the analysis layer.
with

current_results as (
    select * from staging.stg_lab__neurofilament where is_current
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
        sample.matrix,
        sample.collection_date,
        sample.study_day,

        -- the value
        result.paramcd,
        parameter.param,
        case
            when result.result_qualifier is not null then null
            when result.value_std < result.lloq_std then null
            when result.value_std > result.uloq_std then null
            else result.value_std
        end                                                             as aval,
        result.standard_unit                                            as aval_unit,
        coalesce(result.result_qualifier = '<', false)
            or coalesce(result.value_std < result.lloq_std, false)     as blq_flag,
        coalesce(result.result_qualifier = '>', false)
            or coalesce(result.value_std > result.uloq_std, false)     as alq_flag,
        -- the limit of a censored result is the number written in it ('<10' is below 10),
        -- else the row's lloq/uloq column (schemas/study.yaml, censored_results)
        coalesce(
            case when result.result_qualifier = '<' then result.value_std end,
            result.lloq_std
        )                                                               as lloq,
        coalesce(
            case when result.result_qualifier = '>' then result.value_std end,
            result.uloq_std
        )                                                               as uloq,
        result.result                                                   as reported_result,
        result.unit                                                     as reported_unit,
        result.analyte                                                  as reported_analyte,
        result.dilution,
        result.plate_id,
        result.run_date,
        -- an optional measure delivered as NaN is missing, as Great Expectations reads it
        case when not isnan(result.cv_pct) then result.cv_pct end      as cv_pct,

        -- provenance
        result.delivery_id,
        result.file_name,
        result.row_number
    from current_results as result
    join ref.parameter as parameter using (paramcd)
    join core.sample as sample using (sample_id)
)

select * from final
