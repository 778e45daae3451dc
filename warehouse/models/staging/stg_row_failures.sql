-- Great Expectations row failures, one row per delivered row that failed at least one
-- expectation in its delivery's newest judgment (a delivery judged again by changed rules keeps
-- its earlier failures in audit.row_failure; they no longer count).
with

newest_judgment as (
    select delivery_id, max(validated_at) as validated_at
    from audit.validation
    group by delivery_id
)

select
    failure.delivery_id,
    failure.row_number,
    string_agg(distinct failure.rule, ', ' order by failure.rule)   as gx_rules,
    string_agg(failure.reason, '; ' order by failure.rule)          as gx_reasons
from audit.row_failure as failure
join newest_judgment
    on newest_judgment.delivery_id = failure.delivery_id
    and newest_judgment.validated_at = failure.validated_at
group by failure.delivery_id, failure.row_number
