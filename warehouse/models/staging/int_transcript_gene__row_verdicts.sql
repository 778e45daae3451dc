-- The gene rows that a row-level rule holds back, whatever their sample: a failed expectation
-- first, then a repeated key within the delivery. One row per held-back row; the few rows that
-- staging, the sample verdicts and quarantine look up by delivery and row number.
select
    delivery_id,
    row_number,
    failures.gx_rules,
    failures.gx_reasons,
    copies.rule                                             as copy_rule,
    copies.reason                                           as copy_reason,
    coalesce(failures.gx_rules, copies.rule)                as rule,
    case when failures.gx_rules is not null then failures.gx_reasons else copies.reason end as reason
from staging.stg_row_failures as failures
full join staging.int_transcript_gene__copies as copies using (delivery_id, row_number)
where delivery_id in (select delivery_id from audit.delivery where family = 'transcript_gene')
