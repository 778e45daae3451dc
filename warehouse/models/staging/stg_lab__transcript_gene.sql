-- RNA-seq gene-level values, checked against the manifest. One row per delivered row;
-- is_current marks the newest valid value per sample and gene. A view: the gene table is the
-- big one and is stored once, in raw; the row-level verdicts come from the small incremental
-- int_transcript_gene__* tables and the sample-level ones from int_transcript_gene__sample_verdicts.
with

judged as (
    select
        gene.* replace (upper(trim(gene.sample_id)) as sample_id),
        gene.sample_id                                      as delivered_sample_id,
        failures.gx_rules,
        failures.gx_reasons,
        copies.rule                                         as copy_rule,
        copies.reason                                       as copy_reason,
        sample.qc_rule                                      as sample_rule,
        sample.qc_reason                                    as sample_reason,
        coalesce(latest.is_latest, true)                    as is_latest
    from raw.transcript_gene as gene
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
    left join staging.int_transcript_gene__copies as copies using (delivery_id, row_number)
    left join staging.int_transcript_gene__latest as latest using (delivery_id, row_number)
    left join staging.int_transcript_gene__sample_verdicts as sample
        on sample.delivery_id = gene.delivery_id and sample.delivered_sample_id is not distinct from gene.sample_id
),

ruled as (
    select
        * exclude (is_latest),
        case
            when gx_rules is not null       then gx_rules
            when copy_rule is not null      then copy_rule
            else sample_rule
        end as qc_rule,
        case
            when gx_rules is not null       then gx_reasons
            when copy_rule is not null      then copy_reason
            else sample_reason
        end as qc_reason,
        is_latest
    from judged
)

select * exclude (is_latest), qc_rule is null and is_latest as is_current
from ruled
