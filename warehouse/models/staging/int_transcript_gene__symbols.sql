-- One symbol per gene id: of the symbols its rows were delivered under, the one most rows carry
-- (ties: the later in alphabetical order; a null symbol only when no row has one). analysis.adgene
-- names every gene row by it, so a gene renamed between deliveries (a lab's annotation update:
-- C10orf54 became VSIR) stays one gene there: one baseline, one row of the gene matrix. Counted
-- over every delivery, so the choice does not depend on the order files arrived in: a warehouse
-- rebuilt from the landing zone names every gene as the one built delivery by delivery.
-- core keeps the delivered symbols. A small table (one row per gene id), rebuilt at every build.
select
    gene_id,
    arg_max(gene_symbol, (gene_symbol is not null, rows, gene_symbol)) as gene_symbol
from (
    select gene_id, gene_symbol, sum(rows) as rows
    from staging.int_transcript_gene__delivered_symbols
    group by all
)
group by gene_id
