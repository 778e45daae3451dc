-- Gene-level expression in analysis shape: one row per subject x gene x sample, linked to
-- treatment and analysis visit through its RNA sample (analysis.adgene_samples, derived like
-- ADBM), so every gene row in core reaches ADGENE, with or without a per-sample summary. A gene
-- is named by one symbol, the one most of its rows carry (staging.int_transcript_gene__symbols).
select
    rna_samples.STUDYID,
    rna_samples.USUBJID,
    rna_samples.SITEID,
    rna_samples.TRTP,
    rna_samples.TRTPN,
    rna_samples.TRTA,
    gene.gene_id                    as GENEID,
    symbol.gene_symbol              as GENESYM,   -- one symbol per gene id
    gene.aval                       as AVAL,
    gene.aval_unit                  as AVALU,
    rna_samples.ADT,
    rna_samples.ADY,
    rna_samples.VISIT,
    rna_samples.AVISIT,
    rna_samples.AVISITN,
    -- the gene's value in the subject's baseline RNA sample (analysis.adgene_change adds BASE and CHG)
    case when rna_samples.ABLFL = 'Y' and gene.aval is not null then 'Y' end as ABLFL,
    rna_samples.ANL01FL,
    gene.sample_id                  as SAMPLEID,
    'core.transcript_gene'          as SRCTBL,
    gene.delivery_id                as SRCDLVID,
    gene.file_name                  as SRCFILE,
    gene.row_number                 as SRCROW
from core.transcript_gene as gene
join analysis.adgene_samples as rna_samples on rna_samples.SAMPLEID = gene.sample_id
-- every current row's gene id is there: its own delivery named it (held-back rows are not current)
join staging.int_transcript_gene__symbols as symbol on symbol.gene_id = gene.gene_id
