-- By file name, the bytes a build need not take in again: those of the file's newest delivery
-- (whatever its verdict) and of its newest accepted one (the file put back as it was loaded,
-- after a replacement that was refused). Read by the build (pipelines/ingest/delivery.py) and by
-- the landing-zone sensor, which must agree on what is new.
select
    file_name,
    arg_max(file_sha256, delivery_id)                                    as newest_sha256,
    arg_max(file_sha256, delivery_id) filter (where status = 'accepted') as loaded_sha256
from audit.delivery
group by file_name
