-- One symbol per gene id: the one its newest gene-level delivery gives it, over the rows no
-- row-level rule held back. analysis.adgene names every gene row by it, so a gene renamed between
-- deliveries (a lab's annotation update: C10orf54 became VSIR) stays one gene there: one baseline,
-- one row of the gene matrix, every row found by either filter. core keeps the delivered symbol.
-- Incremental, one row per gene id: the symbols of the build's new deliveries replace the stored
-- ones (a rebuild from every delivery picks the newest delivery's, as one by one would).
select
    gene_id,
    max_by(gene_symbol, (delivery_id, gene_symbol)) as gene_symbol,
    max(delivery_id)                                as delivery_id
from raw.transcript_gene
anti join staging.int_transcript_gene__row_verdicts using (delivery_id, row_number)
where delivery_id in (select delivery_id from new_deliveries)
    and gene_id is not null
group by gene_id
