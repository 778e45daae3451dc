-- The RNA samples of core.sample, each with how many of its delivered gene rows no rule held
-- back (gene_rows; 0 for a tube collected and not sequenced), from the small per-sample verdicts
-- table, without reading the gene table.
select
    sample.*,
    coalesce((
        select sum(verdict.rows - verdict.rows_held_by_row_rules)
        from staging.int_transcript_gene__sample_verdicts as verdict
        where verdict.sample_id = sample.sample_id and verdict.qc_rule is null
    ), 0) as gene_rows
from core.sample as sample
where sample.matrix = (select matrix from ref.gene_expression)
