-- One row per delivery: what arrived, what loaded, what was held back. For every readable
-- delivery rows_delivered = rows_loaded + rows_quarantined; rows_superseded counts loaded
-- rows that a later delivery has since corrected.
with

staged as (
    select delivery_id, qc_rule, is_current from staging.stg_trial__subject
    union all select delivery_id, qc_rule, is_current from staging.stg_trial__randomisation
    union all select delivery_id, qc_rule, is_current from staging.stg_biobank__sample
    union all select delivery_id, qc_rule, is_current from staging.stg_lab__treg
    union all select delivery_id, qc_rule, is_current from staging.stg_lab__neurofilament
    union all select delivery_id, qc_rule, is_current from staging.stg_lab__transcript_summary
),

-- The gene table is counted from its verdict tables, without reading its rows: a sample that
-- its manifest verdict holds back holds back all its rows, any other sample only the rows that a
-- row-level rule held back. Superseded: valid rows that are not the newest of their sample and gene.
gene_superseded as (
    select delivery_id, count(*) as rows
    from staging.int_transcript_gene__latest
    where not is_latest
        and (delivery_id, sample_id) in (
            select delivery_id, sample_id from staging.int_transcript_gene__sample_verdicts where qc_rule is null)
    group by delivery_id
),

gene_per_delivery as (
    select
        delivery_id,
        sum(case when qc_rule is null then rows - rows_held_by_row_rules else 0 end)::bigint  as rows_loaded,
        sum(case when qc_rule is null then rows_held_by_row_rules else rows end)::bigint      as rows_quarantined
    from staging.int_transcript_gene__sample_verdicts
    group by delivery_id
),

per_delivery as (
    select
        delivery_id,
        count(*) filter (where qc_rule is null)                     as rows_loaded,
        count(*) filter (where qc_rule is not null)                 as rows_quarantined,
        count(*) filter (where qc_rule is null and not is_current)  as rows_superseded
    from staged
    group by delivery_id
    union all
    select delivery_id, rows_loaded, rows_quarantined, coalesce(gene_superseded.rows, 0)
    from gene_per_delivery
    left join gene_superseded using (delivery_id)
),

final as (
    select
        delivery.delivery_id,
        delivery.family,
        delivery.file_name,
        delivery.file_sha256,
        delivery.received_at,
        delivery.rows_delivered,
        case when delivery.status = 'accepted' then coalesce(per_delivery.rows_loaded, 0) else 0 end
            as rows_loaded,
        case when delivery.status = 'accepted' then coalesce(per_delivery.rows_quarantined, 0)
            else delivery.rows_delivered end
            as rows_quarantined,
        coalesce(per_delivery.rows_superseded, 0)                   as rows_superseded,
        case
            when delivery.status <> 'accepted' then delivery.status
            when per_delivery.rows_quarantined > 0 then 'loaded_with_quarantine'
            else 'loaded'
        end                                                         as status,
        delivery.rule,
        delivery.reason,
        delivery.warnings
    from audit.delivery as delivery
    left join per_delivery using (delivery_id)
)

select
    *,
    rows_delivered = rows_loaded + rows_quarantined as balanced
from final
order by delivery_id
