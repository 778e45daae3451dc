-- Accepted deliveries of a family ($1) whose newest judgment (audit.newest_judgment) was made
-- by other rules than the current version ($2), oldest first, with the rows that judgment held
-- back, when it was made and by which version.
select
    delivery.delivery_id,
    delivery.file_name,
    delivery.file_sha256,
    (select count(distinct failure.row_number) from audit.row_failure as failure
     where failure.delivery_id = delivery.delivery_id and failure.validated_at = judgment.validated_at) as rows_failing,
    judgment.validated_at,
    judgment.rules_sha256
from audit.delivery as delivery
join audit.newest_judgment() as judgment using (delivery_id)
where delivery.family = $1
  and delivery.status = 'accepted'
  and judgment.rules_sha256 is distinct from $2
order by delivery.delivery_id
