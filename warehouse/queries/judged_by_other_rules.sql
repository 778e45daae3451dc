-- Accepted deliveries of a family ($1) whose newest judgment was made by other rules than the
-- current version ($2), oldest first, with the rows that judgment held back, when it was made
-- and by which version.
with

newest_judgment as (
    select delivery_id, max(validated_at) as validated_at
    from audit.validation
    group by delivery_id
),

judged_by as (
    select distinct validation.delivery_id, validation.validated_at, validation.rules_sha256
    from audit.validation as validation
    join newest_judgment using (delivery_id, validated_at)
)

select
    delivery.delivery_id,
    delivery.file_name,
    delivery.file_sha256,
    (select count(distinct failure.row_number) from audit.row_failure as failure
     where failure.delivery_id = delivery.delivery_id and failure.validated_at = judged_by.validated_at) as rows_failing,
    judged_by.validated_at,
    judged_by.rules_sha256
from audit.delivery as delivery
join judged_by using (delivery_id)
where delivery.family = $1
  and delivery.status = 'accepted'
  and judged_by.rules_sha256 is distinct from $2
order by delivery.delivery_id
