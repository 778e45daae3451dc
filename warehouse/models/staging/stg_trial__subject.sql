-- Subjects from the trial database exports. Each export is a full snapshot: the current
-- subjects are the valid rows of the newest export. Earlier rows stay loaded but are no longer
-- current, and a subject missing from the newest export (or held back there) is not current.
with

source as (
    select * replace (upper(trim(usubjid)) as usubjid) from raw.subjects
),

checked as (
    select
        source.*,
        failures.gx_rules,
        failures.gx_reasons,
        count(*) over (partition by source.delivery_id, source.usubjid) as copies_in_delivery
    from source
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
),

ruled as (
    select
        *,
        case
            when gx_rules is not null then gx_rules
            when copies_in_delivery > 1 then 'duplicate_key'
        end as qc_rule,
        case
            when gx_rules is not null then gx_reasons
            when copies_in_delivery > 1 then
                'usubjid ' || usubjid || ' appears ' || copies_in_delivery || ' times in this export'
        end as qc_reason
    from checked
)

select
    ruled.*,
    qc_rule is null and delivery_id = audit.newest_delivery('subjects') as is_current
from ruled
