-- Every delivered row that was held back by a row-level rule, with the rule, a readable
-- reason and the row as delivered. Whole files that were refused are in rejected_files.
with

-- The gene table's held-back rows are found in its small verdict tables first (rows a row-level
-- rule held back, samples whose manifest verdict holds them back), then only those rows are read
-- from raw. A row-level rule comes before the sample's verdict, as in
-- staging.stg_lab__transcript_gene; a test checks that both give the same rows, rules and reasons.
gene_held_by_row_rules as (
    select
        'transcript_gene', gene.delivery_id, gene.file_name, gene.row_number, held.rule, held.reason,
        to_json(struct_pack(gene.sample_id, gene.gene_id, gene.gene_symbol, gene.expression, gene.extra_columns))
    from raw.transcript_gene as gene
    join staging.int_transcript_gene__row_verdicts as held using (delivery_id, row_number)
),

gene_held_by_sample_verdicts as (
    select
        'transcript_gene', gene.delivery_id, gene.file_name, gene.row_number, verdict.qc_rule, verdict.qc_reason,
        to_json(struct_pack(gene.sample_id, gene.gene_id, gene.gene_symbol, gene.expression, gene.extra_columns))
    from raw.transcript_gene as gene
    join staging.int_transcript_gene__sample_verdicts as verdict
        on verdict.delivery_id = gene.delivery_id and verdict.delivered_sample_id is not distinct from gene.sample_id
    anti join staging.int_transcript_gene__row_verdicts as held
        on held.delivery_id = gene.delivery_id and held.row_number = gene.row_number
    where verdict.qc_rule is not null
)

select * from quarantine.rejected_rows_of('subjects', 'staging.stg_trial__subject', 'raw.subjects')
union all
select * from quarantine.rejected_rows_of('randomisation', 'staging.stg_trial__randomisation', 'raw.randomisation')
union all
select * from quarantine.rejected_rows_of('sample_manifest', 'staging.stg_biobank__sample', 'raw.sample_manifest')
union all
select * from quarantine.rejected_rows_of('treg', 'staging.stg_lab__treg', 'raw.treg')
union all
select * from quarantine.rejected_rows_of('neurofilament', 'staging.stg_lab__neurofilament', 'raw.neurofilament')
union all
select * from quarantine.rejected_rows_of('transcript_summary', 'staging.stg_lab__transcript_summary', 'raw.transcript_summary')
union all
select * from gene_held_by_row_rules
union all
select * from gene_held_by_sample_verdicts
