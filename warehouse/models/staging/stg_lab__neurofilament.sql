-- Neurofilament results, parsed and harmonised to the standard unit of their parameter.
-- One row per delivered row; qc_rule is null for rows that load, and is_current marks the
-- newest valid result per sample and analyte (a later delivery corrects an earlier one).
with

source as (
    select * replace (upper(trim(sample_id)) as sample_id) from raw.neurofilament
),

parsed as (
    select
        *,
        -- '<' below the LLOQ, '>' above the ULOQ, in any spelling declared in the study definition
        ref.result_qualifier(result)                                            as result_qualifier,
        try_cast(regexp_extract(result, '([0-9]+(\.[0-9]+)?)', 1) as double)    as result_number
    from source
),

checked as (
    select
        parsed.*,
        failures.gx_rules,
        failures.gx_reasons,
        count(distinct (parsed.result, parsed.unit, parsed.lloq, parsed.uloq, parsed.dilution,
            parsed.plate_id, parsed.run_date, parsed.cv_pct))
            over (partition by parsed.delivery_id, parsed.sample_id, parsed.analyte)  as versions_in_delivery,
        min(parsed.row_number) over (
            partition by parsed.delivery_id, parsed.sample_id, parsed.analyte, parsed.result, parsed.unit,
                parsed.lloq, parsed.uloq, parsed.dilution, parsed.plate_id, parsed.run_date, parsed.cv_pct
        )                                                                            as first_copy_row,
        sample.sample_id is not null                                                 as sample_known,
        sample.qc_rule                                                               as sample_rule,
        sample.qc_reason                                                             as sample_reason,
        sample.matrix,
        sample.collection_date,
        parameter.paramcd,
        parameter.unit                                                               as standard_unit,
        parameter.plausible_lo,
        parameter.plausible_hi,
        parameter.lloq                                                               as assay_lloq,
        parameter.uloq                                                               as assay_uloq,
        parameter.limit_tolerance,
        unit.factor
    from parsed
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
    left join staging.stg_biobank__sample as sample
        on sample.sample_id = parsed.sample_id and sample.is_latest
    left join ref.parameter as parameter
        on parameter.family = 'neurofilament'
        and parameter.source_analyte = parsed.analyte
        and parameter.matrix = sample.matrix
    left join ref.parameter_unit as unit
        on unit.paramcd = parameter.paramcd and lower(unit.unit_reported) = lower(trim(parsed.unit))
),

harmonised as (
    select
        *,
        -- rounded to 6 decimals: converting adds float noise (0.0449 ng/mL x 1000 is
        -- 44.900000000000006 pg/mL) that would break equality tests in analysts' code
        round(result_number * factor, 6)    as value_std,
        round(lloq * factor, 6)             as lloq_std,
        round(uloq * factor, 6)             as uloq_std
    from checked
),

compared as (
    select
        *,
        -- the limits decide what is censored: limits in another unit than the result are not read
        lloq_std not between assay_lloq / limit_tolerance and assay_lloq * limit_tolerance
            or uloq_std not between assay_uloq / limit_tolerance and assay_uloq * limit_tolerance
            as limits_off_assay,
        -- the number written in a censored result is its limit, and the analysis value it is
        -- imputed from: as far from the row's own limit as a dilution may put it, no further
        coalesce(case result_qualifier
            when '<' then value_std not between lloq_std / limit_tolerance and lloq_std * limit_tolerance
            when '>' then value_std not between uloq_std / limit_tolerance and uloq_std * limit_tolerance
        end, false) as censored_limit_off
    from harmonised
),

ruled as (
    select
        *,
        case
            when gx_rules is not null                                   then gx_rules
            when versions_in_delivery > 1                               then 'conflicting_values'
            when row_number > first_copy_row                            then 'duplicate_row'
            when not sample_known                                       then 'sample_unknown'
            when sample_rule is not null                                then sample_rule
            when paramcd is null                                        then 'analyte_matrix_mismatch'
            when factor is null                                         then 'unit_not_convertible'
            when limits_off_assay                                       then 'limits_disagree_with_assay'
            when run_date > current_date                                then 'run_in_future'
            when run_date < collection_date                             then 'run_before_collection'
            when (result_qualifier = '<' and value_std > uloq_std)
                or (result_qualifier = '>' and value_std < lloq_std)
                or censored_limit_off                                   then 'censored_limit_inconsistent'
            when result_qualifier is null
                and value_std not between plausible_lo and plausible_hi then 'implausible_value'
        end as qc_rule,
        case
            when gx_rules is not null then gx_reasons
            when versions_in_delivery > 1 then
                'sample ' || sample_id || ' has ' || versions_in_delivery || ' different ' || analyte
                || ' results in this delivery'
            when row_number > first_copy_row then
                'exact copy of row ' || first_copy_row || ' of this delivery'
            when not sample_known then
                'sample ' || sample_id || ' is not in the biobank manifest'
            when sample_rule is not null then
                'sample ' || sample_id || ': ' || sample_reason
            when paramcd is null then
                analyte || ' is not measured in ' || coalesce(matrix, 'an unknown matrix')
            when factor is null then
                'unit ' || unit || ' cannot be converted to ' || standard_unit
            when limits_off_assay then
                'LLOQ ' || coalesce(lloq::varchar, 'none') || ' and ULOQ ' || coalesce(uloq::varchar, 'none')
                || ' ' || unit || ' are ' || coalesce(lloq_std::varchar, 'none') || ' and '
                || coalesce(uloq_std::varchar, 'none') || ' ' || standard_unit || ', but the assay''s limits are ' || assay_lloq
                || ' and ' || assay_uloq || ' ' || standard_unit || ' (more than ' || limit_tolerance
                || ' times off: limits in another unit than the result?)'
            when run_date > current_date then
                'run date ' || run_date || ' is in the future'
            when run_date < collection_date then
                'assay run on ' || run_date || ', before sample ' || sample_id || ' was collected on '
                || collection_date
            -- '<99999' with a ULOQ of 1500 would be both below the LLOQ and above the ULOQ
            when result_qualifier = '<' and value_std > uloq_std then
                result || ' says below the LLOQ, but ' || round(value_std, 3) || ' ' || standard_unit
                || ' is above the ULOQ ' || uloq_std || ' ' || standard_unit
            when result_qualifier = '>' and value_std < lloq_std then
                result || ' says above the ULOQ, but ' || round(value_std, 3) || ' ' || standard_unit
                || ' is below the LLOQ ' || lloq_std || ' ' || standard_unit
            -- its limit becomes the analysis value: '>99999', or '<0.003' written in ng/mL in a pg/mL row
            when censored_limit_off then
                result || ' ' || unit || ' says ' || case result_qualifier when '<' then 'below the LLOQ' else 'above the ULOQ' end
                || ', but its limit ' || round(value_std, 6) || ' ' || standard_unit || ' is more than '
                || limit_tolerance || ' times off the row''s ' || case result_qualifier when '<' then 'LLOQ ' || lloq_std
                else 'ULOQ ' || uloq_std end || ' ' || standard_unit || ' (a limit in another unit than the result?)'
            when result_qualifier is null and value_std not between plausible_lo and plausible_hi then
                result || ' ' || unit || ' = ' || round(value_std, 3) || ' ' || standard_unit
                || ' is outside the plausible range ' || plausible_lo || ' to ' || plausible_hi
        end as qc_reason
    from compared
)

select
    ruled.*,
    qc_rule is null
        and row_number() over (
            partition by sample_id, analyte, qc_rule is null order by delivery_id desc, row_number desc
        ) = 1 as is_current
from ruled
