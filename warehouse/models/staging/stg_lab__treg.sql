-- Treg flow cytometry rows, checked against the manifest and each other. One row per
-- delivered row; qc_rule is null for rows that load, and is_current marks the newest
-- valid value per sample (a later delivery corrects an earlier one).
with

source as (
    select * replace (upper(trim(sample_id)) as sample_id) from raw.treg
),

checked as (
    select
        source.*,
        failures.gx_rules,
        failures.gx_reasons,
        count(distinct (cd4_count, treg_count, treg_pct_cd4, panel_version, acquisition_date))
            over (partition by source.delivery_id, source.sample_id)                 as versions_in_delivery,
        min(source.row_number) over (
            partition by source.delivery_id, source.sample_id, cd4_count, treg_count, treg_pct_cd4,
                panel_version, acquisition_date
        )                                                                            as first_copy_row,
        sample.sample_id is not null                                                 as sample_known,
        sample.qc_rule                                                               as sample_rule,
        sample.qc_reason                                                             as sample_reason,
        sample.matrix,
        sample.collection_date
    from source
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
    left join staging.stg_biobank__sample as sample
        on sample.sample_id = source.sample_id and sample.is_latest
),

ruled as (
    select
        *,
        case
            when gx_rules is not null           then gx_rules
            when versions_in_delivery > 1       then 'conflicting_values'
            when row_number > first_copy_row    then 'duplicate_row'
            when not sample_known               then 'sample_unknown'
            when sample_rule is not null        then sample_rule
            when matrix <> 'WHOLE_BLOOD'        then 'matrix_mismatch'
            when acquisition_date > current_date then 'acquisition_in_future'
            when acquisition_date < collection_date then 'acquisition_before_collection'
        end as qc_rule,
        case
            when gx_rules is not null then gx_reasons
            when versions_in_delivery > 1 then
                'sample ' || sample_id || ' has ' || versions_in_delivery || ' different results in this delivery'
            when row_number > first_copy_row then
                'exact copy of row ' || first_copy_row || ' of this delivery'
            when not sample_known then
                'sample ' || sample_id || ' is not in the biobank manifest'
            when sample_rule is not null then
                'sample ' || sample_id || ': ' || sample_reason
            when matrix <> 'WHOLE_BLOOD' then
                'sample ' || sample_id || ' is ' || matrix || ', flow cytometry needs WHOLE_BLOOD'
            when acquisition_date > current_date then
                'acquisition date ' || acquisition_date || ' is in the future'
            when acquisition_date < collection_date then
                'acquired on ' || acquisition_date || ', before sample ' || sample_id || ' was collected on '
                || collection_date
        end as qc_reason
    from checked
)

select
    ruled.*,
    qc_rule is null
        and row_number() over (
            partition by sample_id, qc_rule is null order by delivery_id desc, row_number desc
        ) = 1 as is_current
from ruled
