-- The symbols each gene-level delivery gives each gene id, with how many rows carry each, over
-- the rows no row-level rule held back (a null symbol counted as one). Incremental: one pass over
-- each new delivery. staging.int_transcript_gene__symbols picks one symbol per gene id from it, and
-- a pull by gene symbol (pipelines/api.py) finds a gene by any symbol it was delivered under.
select
    delivery_id,
    gene_id,
    gene_symbol,
    count(*) as rows
from raw.transcript_gene
anti join staging.int_transcript_gene__row_verdicts using (delivery_id, row_number)
where delivery_id in (select delivery_id from new_deliveries)
    and gene_id is not null
group by all
