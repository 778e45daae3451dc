-- Great Expectations row failures, one row per delivered row that failed at least one
-- expectation in its delivery's newest judgment (audit.newest_judgment).
select
    failure.delivery_id,
    failure.row_number,
    string_agg(distinct failure.rule, ', ' order by failure.rule)   as gx_rules,
    string_agg(failure.reason, '; ' order by failure.rule)          as gx_reasons
from audit.row_failure as failure
join audit.newest_judgment() as judgment
    on judgment.delivery_id = failure.delivery_id
    and judgment.validated_at = failure.validated_at
group by failure.delivery_id, failure.row_number
