-- Gene-level expression in analysis shape: one row per subject x gene x sample, linked to
-- treatment and to the analysis visit that ADBM gave the same RNA sample.
with

rna_samples as (
    select distinct STUDYID, USUBJID, SITEID, TRTP, TRTPN, TRTA, SAMPLEID, ADT, ADY, VISIT, AVISIT, AVISITN
    from analysis.adbm
    where SRCTBL = 'core.transcript_summary'
)

select
    rna_samples.STUDYID,
    rna_samples.USUBJID,
    rna_samples.SITEID,
    rna_samples.TRTP,
    rna_samples.TRTPN,
    rna_samples.TRTA,
    gene.gene_id                    as GENEID,
    gene.gene_symbol                as GENESYM,
    gene.aval                       as AVAL,
    gene.aval_unit                  as AVALU,
    rna_samples.ADT,
    rna_samples.ADY,
    rna_samples.VISIT,
    rna_samples.AVISIT,
    rna_samples.AVISITN,
    gene.sample_id                  as SAMPLEID,
    'core.transcript_gene'          as SRCTBL,
    gene.delivery_id                as SRCDLVID,
    gene.file_name                  as SRCFILE,
    gene.row_number                 as SRCROW
from core.transcript_gene as gene
join rna_samples on rna_samples.SAMPLEID = gene.sample_id
