-- Which samples each gene-level delivery carries, and how many rows of each. Incremental: one
-- pass over each new delivery (the `new_deliveries` of the build), so later models find the
-- samples delivered more than once without reading the gene table.
select
    delivery_id,
    upper(trim(sample_id))  as sample_id,
    sample_id               as delivered_sample_id,
    count(*)                as rows
from raw.transcript_gene
where delivery_id in (select delivery_id from new_deliveries)
group by all
