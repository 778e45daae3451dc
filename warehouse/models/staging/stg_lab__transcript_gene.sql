-- RNA-seq gene-level values, checked against the manifest. One row per delivered row;
-- is_current marks the newest valid value per sample and gene. A view: the gene table is the
-- big one and is stored once, in raw; the verdicts come from the small int_transcript_gene__*
-- tables: row-level from __row_verdicts, sample-level from __sample_verdicts.
with

judged as (
    select
        gene.* replace (upper(trim(gene.sample_id)) as sample_id),
        gene.sample_id                                      as delivered_sample_id,
        held.gx_rules,
        held.gx_reasons,
        held.copy_rule,
        held.copy_reason,
        held.rule                                           as row_rule,
        held.reason                                         as row_reason,
        sample.qc_rule                                      as sample_rule,
        sample.qc_reason                                    as sample_reason,
        coalesce(latest.is_latest, true)                    as is_latest
    from raw.transcript_gene as gene
    left join staging.int_transcript_gene__row_verdicts as held using (delivery_id, row_number)
    left join staging.int_transcript_gene__latest as latest using (delivery_id, row_number)
    left join staging.int_transcript_gene__sample_verdicts as sample
        on sample.delivery_id = gene.delivery_id and sample.delivered_sample_id is not distinct from gene.sample_id
),

ruled as (
    select
        * exclude (is_latest, row_rule, row_reason),
        -- a row-level rule first, then the sample's verdict
        coalesce(row_rule, sample_rule)                     as qc_rule,
        case when row_rule is not null then row_reason else sample_reason end as qc_reason,
        is_latest
    from judged
)

select * exclude (is_latest), qc_rule is null and is_latest as is_current
from ruled
