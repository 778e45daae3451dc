-- Per family: deliveries, rows delivered and loaded, rows held back by row-level rules (the rows
-- of quarantine.rejected_rows), refused and duplicate files, and whether every delivery balances.
-- Rows delivered also counts the rows of refused and duplicate files, which are not loaded.
select
    family,
    count(*)                                                                    as deliveries,
    coalesce(sum(rows_delivered), 0)                                            as delivered,
    sum(rows_loaded)                                                            as loaded,
    coalesce(sum(rows_quarantined) filter (where status not in ('rejected', 'duplicate')), 0)
                                                                                as quarantined,
    count(*) filter (where status = 'rejected')                                 as refused,
    count(*) filter (where status = 'duplicate')                                as duplicates,
    bool_and(coalesce(balanced, true))                                          as balanced
from audit.reconciliation
group by family
order by family
