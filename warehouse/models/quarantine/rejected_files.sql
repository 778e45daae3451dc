-- Every delivered file that was refused whole (unreadable, empty, personal data, missing or
-- mistyped columns) or held back as a byte-identical copy of an earlier delivery.
select
    delivery_id,
    family,
    file_name,
    file_sha256,
    rows_delivered,
    status,
    rule,
    reason,
    duplicate_of,
    received_at
from audit.delivery
where status in ('rejected', 'duplicate')
