-- The verdict on each sample of each gene-level delivery, against the biobank manifest: is the
-- sample there, valid, and a PAXGENE_RNA tube. One row per delivery and sample as delivered,
-- with its row count and how many of those rows a row-level rule already held back (a failed
-- expectation, a repeated key), so that per-delivery counts never read the gene table. A table
-- rebuilt at every build: a later manifest can change a sample's verdict.
with

held_per_sample as (
    select gene.delivery_id, gene.sample_id as delivered_sample_id, count(*) as rows
    from raw.transcript_gene as gene
    join staging.int_transcript_gene__row_verdicts using (delivery_id, row_number)
    group by all
)

select
    delivered.delivery_id,
    delivered.sample_id,
    delivered.delivered_sample_id,
    delivered.rows,
    coalesce(held_per_sample.rows, 0)           as rows_held_by_row_rules,
    case
        when sample.sample_id is null           then 'sample_unknown'
        when sample.qc_rule is not null         then sample.qc_rule
        when sample.matrix <> 'PAXGENE_RNA'     then 'matrix_mismatch'
    end                                         as qc_rule,
    case
        when sample.sample_id is null           then
            'sample ' || delivered.sample_id || ' is not in the biobank manifest'
        when sample.qc_rule is not null         then 'sample ' || delivered.sample_id || ': ' || sample.qc_reason
        when sample.matrix <> 'PAXGENE_RNA'     then
            'sample ' || delivered.sample_id || ' is ' || sample.matrix || ', RNA-seq needs PAXGENE_RNA'
    end                                         as qc_reason
from staging.int_transcript_gene__samples as delivered
left join held_per_sample
    on held_per_sample.delivery_id = delivered.delivery_id
    and held_per_sample.delivered_sample_id is not distinct from delivered.delivered_sample_id
left join staging.stg_biobank__sample as sample
    on sample.sample_id = delivered.sample_id and sample.is_latest
