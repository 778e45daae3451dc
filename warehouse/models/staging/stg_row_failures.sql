-- Great Expectations row failures, one row per delivered row that failed at least one expectation.
select
    delivery_id,
    row_number,
    string_agg(distinct rule, ', ' order by rule)   as gx_rules,
    string_agg(reason, '; ' order by rule)          as gx_reasons
from audit.row_failure
group by delivery_id, row_number
