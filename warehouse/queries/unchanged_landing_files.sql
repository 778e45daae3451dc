-- Of the files listed in the landing zone now (landing_listing: each file's name and its
-- file-system record), those taken in (whatever the verdict) whose record has not changed since:
-- a build need not read or hash them again. One query for the whole folder, as deliveries pile up.
select listing.file_name
from landing_listing as listing
join audit.landing_file as seen
    on  seen.file_name  = listing.file_name
    and seen.file_bytes = listing.file_bytes
    and seen.mtime_ns   = listing.mtime_ns
    and seen.ctime_ns   = listing.ctime_ns
    and seen.inode      = listing.inode
    and seen.device     = listing.device
where exists (
    select 1 from audit.delivery
    where delivery.file_name = seen.file_name and delivery.file_sha256 = seen.file_sha256
)
