-- RNA-seq gene-level values, checked against the manifest. One row per delivered row;
-- is_current marks the newest valid value per sample and gene. A view: the gene table is the
-- big one and is stored once, in raw; the row-level verdicts come from the small incremental
-- int_transcript_gene__* tables and the sample-level ones from the manifest.
with

judged as (
    select
        gene.* replace (upper(trim(gene.sample_id)) as sample_id),
        gene.sample_id                                      as delivered_sample_id,
        failures.gx_rules,
        failures.gx_reasons,
        copies.rule                                         as copy_rule,
        copies.reason                                       as copy_reason,
        sample.sample_id is not null                        as sample_known,
        sample.qc_rule                                      as sample_rule,
        sample.qc_reason                                    as sample_reason,
        sample.matrix,
        coalesce(latest.is_latest, true)                    as is_latest
    from raw.transcript_gene as gene
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
    left join staging.int_transcript_gene__copies as copies using (delivery_id, row_number)
    left join staging.int_transcript_gene__latest as latest using (delivery_id, row_number)
    left join staging.stg_biobank__sample as sample
        on sample.sample_id = upper(trim(gene.sample_id)) and sample.is_latest
),

ruled as (
    select
        * exclude (is_latest),
        case
            when gx_rules is not null       then gx_rules
            when copy_rule is not null      then copy_rule
            when not sample_known           then 'sample_unknown'
            when sample_rule is not null    then sample_rule
            when matrix <> 'PAXGENE_RNA'    then 'matrix_mismatch'
        end as qc_rule,
        case
            when gx_rules is not null       then gx_reasons
            when copy_rule is not null      then copy_reason
            when not sample_known           then 'sample ' || sample_id || ' is not in the biobank manifest'
            when sample_rule is not null    then 'sample ' || sample_id || ': ' || sample_reason
            when matrix <> 'PAXGENE_RNA'    then
                'sample ' || sample_id || ' is ' || matrix || ', RNA-seq needs PAXGENE_RNA'
        end as qc_reason,
        is_latest
    from judged
)

select * exclude (is_latest), qc_rule is null and is_latest as is_current
from ruled
