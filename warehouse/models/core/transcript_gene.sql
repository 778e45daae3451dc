-- One row per gene-level expression value (log2 CPM), linked to subject, arm and visit.
-- Only the current (newest valid) value per sample and gene.
select
    -- subject, arm and visit
    sample.usubjid,
    sample.armcd,
    sample.arm,
    sample.visit_code,
    sample.visit_num,
    sample.sample_id,
    sample.collection_date,
    sample.study_day,

    -- the value
    gene.gene_id,
    gene.gene_symbol,
    gene.expression                             as aval,
    (select unit from ref.gene_expression)      as aval_unit,

    -- provenance
    gene.delivery_id,
    gene.file_name,
    gene.row_number
from staging.stg_lab__transcript_gene as gene
join core.sample as sample using (sample_id)
where gene.is_current
