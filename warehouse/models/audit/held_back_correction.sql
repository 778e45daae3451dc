-- Held-back rows that would have corrected a value still in use: their key has a current value
-- from an earlier delivery, which core and the analysis tables keep until the lab sends a valid
-- row. One row per held-back row, with the rule and reason and the row whose value stays current.
-- Finding the current gene rows reads the gene table once (about 0.2 s at the trial's size), so
-- the build does not preview this view.
with

-- gene rows a row-level rule held back (the few the verdict table names), read from raw
held_genes as (
    select upper(trim(gene.sample_id)) as sample_id, gene.gene_id, gene.delivery_id, gene.file_name,
        gene.row_number, verdict.rule, verdict.reason
    from staging.int_transcript_gene__row_verdicts as verdict
    join raw.transcript_gene as gene using (delivery_id, row_number)
),

held as (
    select 'treg' as family, sample_id as record_key, delivery_id, file_name, row_number, qc_rule, qc_reason
    from staging.stg_lab__treg where qc_rule is not null
    union all
    -- the analyte compared ignoring case and spaces: an 'NFL ' correction, held back, still corrects NfL
    select 'neurofilament', sample_id || ' ' || lower(trim(analyte)), delivery_id, file_name, row_number, qc_rule,
        qc_reason
    from staging.stg_lab__neurofilament where qc_rule is not null
    union all
    select 'transcript_summary', sample_id, delivery_id, file_name, row_number, qc_rule, qc_reason
    from staging.stg_lab__transcript_summary where qc_rule is not null
    union all
    select 'transcript_gene', sample_id || ' ' || gene_id, delivery_id, file_name, row_number, rule, reason
    from held_genes
),

current_values as (
    select 'treg' as family, sample_id as record_key, delivery_id, file_name, row_number
    from staging.stg_lab__treg where is_current
    union all
    select 'neurofilament', sample_id || ' ' || lower(trim(analyte)), delivery_id, file_name, row_number
    from staging.stg_lab__neurofilament where is_current
    union all
    select 'transcript_summary', sample_id, delivery_id, file_name, row_number
    from staging.stg_lab__transcript_summary where is_current
    union all
    select 'transcript_gene', sample_id || ' ' || gene_id, delivery_id, file_name, row_number
    from core.transcript_gene
    where (sample_id, gene_id) in (select sample_id, gene_id from held_genes)
)

select
    held.family,
    held.record_key,
    held.delivery_id                 as held_back_delivery_id,
    held.file_name                   as held_back_file_name,
    held.row_number                  as held_back_row_number,
    held.qc_rule                     as rule,
    held.qc_reason                   as reason,
    current_values.delivery_id       as current_delivery_id,
    current_values.file_name         as current_file_name,
    current_values.row_number        as current_row_number
from held
join current_values using (family, record_key)
where current_values.delivery_id < held.delivery_id
