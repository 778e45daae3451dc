-- RNA-seq gene-level values, checked against the manifest. One row per delivered row;
-- is_current marks the newest valid value per sample and gene.
with

source as (
    select * replace (upper(trim(sample_id)) as sample_id) from raw.transcript_gene
),

-- One pass over the (large) table: copies of a key within a delivery, and whether they differ.
copies as (
    select
        *,
        count(*) over same_key                                                      as copies,
        min(expression) over same_key is distinct from max(expression) over same_key
            or min(gene_symbol) over same_key is distinct from max(gene_symbol) over same_key
            or count(expression) over same_key not in (0, count(*) over same_key)   as values_differ,
        min(row_number) over same_key                                               as first_key_row
    from source
    window same_key as (partition by delivery_id, sample_id, gene_id)
),

checked as (
    select
        source.* exclude (copies, values_differ, first_key_row),
        failures.gx_rules,
        failures.gx_reasons,
        case when source.copies > 1 and source.values_differ then 2 else 1 end     as versions_in_delivery,
        case when source.copies > 1 and not source.values_differ then source.first_key_row
            else source.row_number end                                               as first_copy_row,
        sample.sample_id is not null                                                 as sample_known,
        sample.qc_rule                                                               as sample_rule,
        sample.qc_reason                                                             as sample_reason,
        sample.matrix
    from copies as source
    left join staging.stg_row_failures as failures using (delivery_id, row_number)
    left join staging.stg_biobank__sample as sample
        on sample.sample_id = source.sample_id and sample.is_latest
),

ruled as (
    select
        *,
        case
            when gx_rules is not null           then gx_rules
            when versions_in_delivery > 1       then 'conflicting_values'
            when row_number > first_copy_row    then 'duplicate_row'
            when not sample_known               then 'sample_unknown'
            when sample_rule is not null        then sample_rule
            when matrix <> 'PAXGENE_RNA'        then 'matrix_mismatch'
        end as qc_rule,
        case
            when gx_rules is not null then gx_reasons
            when versions_in_delivery > 1 then
                'sample ' || sample_id || ' has ' || versions_in_delivery || ' different values of '
                || gene_id || ' in this delivery'
            when row_number > first_copy_row then
                'exact copy of row ' || first_copy_row || ' of this delivery'
            when not sample_known then
                'sample ' || sample_id || ' is not in the biobank manifest'
            when sample_rule is not null then
                'sample ' || sample_id || ': ' || sample_reason
            when matrix <> 'PAXGENE_RNA' then
                'sample ' || sample_id || ' is ' || matrix || ', RNA-seq needs PAXGENE_RNA'
        end as qc_reason
    from checked
)

select
    ruled.*,
    qc_rule is null
        and row_number() over (
            partition by sample_id, gene_id, qc_rule is null order by delivery_id desc, row_number desc
        ) = 1 as is_current
from ruled
