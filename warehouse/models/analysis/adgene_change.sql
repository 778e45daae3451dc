-- ADGENE with baseline and change from baseline: BASE is the gene's value in the subject's
-- baseline RNA sample (ABLFL), on every row of the subject and gene; CHG = AVAL - BASE, on log2
-- values a log2 fold change, on the samples after it only (it is the last sample up to day 1).
-- No PCHG or R2BASE: a percent change of a log value means nothing.
-- A view over analysis.adgene, apart from it because BASE is a window over a subject's rows of
-- a gene: a filter on the subject or the gene is applied first and costs little, a pass over the
-- whole table sorts all of it (analysis.adgene's first rows stay instant).
with with_baseline as (
    select
        *,
        max(case when ABLFL = 'Y' then AVAL end) over subject_gene as BASE,
        max(case when ABLFL = 'Y' then ADY end) over subject_gene  as baseline_ady
    from analysis.adgene
    window subject_gene as (partition by USUBJID, GENEID, GENESYM)
)

select
    STUDYID, USUBJID, SITEID, TRTP, TRTPN, TRTA,
    GENEID, GENESYM, AVAL, AVALU,
    ADT, ADY, VISIT, AVISIT, AVISITN,
    ABLFL,
    BASE,
    case when ADY > baseline_ady then round(AVAL - BASE, 9) end as CHG,
    ANL01FL,
    SAMPLEID, SRCTBL, SRCDLVID, SRCFILE, SRCROW
from with_baseline
