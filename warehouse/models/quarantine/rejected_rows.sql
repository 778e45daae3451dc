-- Every delivered row that was held back by a row-level rule, with the rule, a readable
-- reason and the row as delivered. Whole files that were refused are in rejected_files.
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
-- The gene table's staging view already carries every delivered column: its held-back rows are
-- read in one pass, without matching 55 million raw rows a second time.
select
    'transcript_gene',
    delivery_id,
    file_name,
    row_number,
    qc_rule,
    qc_reason,
    to_json(struct_pack(sample_id := delivered_sample_id, gene_id, gene_symbol, expression, extra_columns))
from staging.stg_lab__transcript_gene
where qc_rule is not null
