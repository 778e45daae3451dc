-- Deliveries, rows delivered, loaded and held back, refused files and balance, per family.
select
    family,
    count(*)                                                        as deliveries,
    coalesce(sum(rows_delivered), 0)                                as delivered,
    sum(rows_loaded)                                                as loaded,
    coalesce(sum(rows_quarantined), 0)                              as quarantined,
    count(*) filter (where status in ('rejected', 'duplicate'))     as refused,
    bool_and(coalesce(balanced, true))                              as balanced
from audit.reconciliation
group by family
order by family
