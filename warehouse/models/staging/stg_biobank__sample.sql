-- Biobank samples with subject, study day and the checks every lab result inherits.
-- Study day follows CDISC: day 1 is the randomisation date, there is no day 0.
-- Each manifest is a full snapshot: a sample's row in the newest manifest decides (is_latest),
-- and a sample missing from it is no longer known.
with

source as (
    select * replace (upper(trim(sample_id)) as sample_id, upper(trim(usubjid)) as usubjid)
    from raw.sample_manifest
),

subject as (
    select * from core.subject
),

checked as (
    select
        source.*,
        cast(source.collection_datetime as date)                 as collection_date,
        failures.gx_rules,
        failures.gx_reasons,
        count(*) over (partition by source.delivery_id, source.sample_id) as copies_in_delivery,
        subject.usubjid is not null                              as subject_known,
        subject.randomised,
        subject.consent_date,
        subject.death_date,
        subject.withdrawal_date,
        subject.randomisation_date,
        visit.visit_num,
        visit.window_lo,
        visit.window_hi,
        visit_matrix.matrix is not null                          as matrix_planned
    from source
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
    left join subject using (usubjid)
    left join ref.visit as visit using (visit_code)
    left join ref.visit_matrix as visit_matrix using (visit_code, matrix)
),

with_study_day as (
    select
        *,
        case
            when collection_date >= randomisation_date then collection_date - randomisation_date + 1
            else collection_date - randomisation_date
        end as study_day
    from checked
),

ruled as (
    select
        *,
        case
            when gx_rules is not null                           then gx_rules
            when copies_in_delivery > 1                         then 'duplicate_key'
            when not subject_known                              then 'subject_unknown'
            when not randomised                                 then 'subject_not_randomised'
            when not matrix_planned                             then 'matrix_not_planned'
            when collection_date > current_date                 then 'collection_in_future'
            when collection_date < consent_date                 then 'collection_before_consent'
            when collection_date > death_date                   then 'collection_after_death'
            when collection_date > withdrawal_date              then 'collection_after_withdrawal'
            when study_day not between window_lo and window_hi  then 'collection_out_of_window'
        end as qc_rule,
        case
            when gx_rules is not null then gx_reasons
            when copies_in_delivery > 1 then
                'sample ' || sample_id || ' appears ' || copies_in_delivery || ' times in this manifest'
            when not subject_known then
                'subject ' || usubjid || ' is not in the subjects file'
            when not randomised then
                'subject ' || usubjid || ' entered the run-in but was never randomised'
            when not matrix_planned then
                matrix || ' is not collected at visit ' || visit_code
            when collection_date > current_date then
                'collection date ' || collection_date || ' is in the future'
            when collection_date < consent_date then
                'collection date ' || collection_date || ' precedes consent on ' || consent_date
            when collection_date > death_date then
                'collection date ' || collection_date || ' is after death on ' || death_date
            when collection_date > withdrawal_date then
                'collection date ' || collection_date || ' is after withdrawal on ' || withdrawal_date
            when study_day not between window_lo and window_hi then
                'collected on ' || collection_date || ' (study day ' || study_day || '), outside the '
                || visit_code || ' window (days ' || window_lo || ' to ' || window_hi || ')'
        end as qc_reason
    from with_study_day
)

select
    ruled.*,
    qc_rule is null and delivery_id = audit.newest_delivery('sample_manifest') as is_current,
    -- the sample's row in the newest manifest, valid or not (one row, also when it is there
    -- twice): lab results inherit its verdict
    delivery_id = audit.newest_delivery('sample_manifest')
        and row_number() over (partition by sample_id order by delivery_id desc, row_number desc) = 1 as is_latest
from ruled
