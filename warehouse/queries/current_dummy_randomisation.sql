-- The blinded build's current dummy randomisation, by subject: a subject keeps its dummy block and
-- arm from build to build (see make_dummy_randomisation).
select upper(trim(usubjid)) as usubjid, stratum, block_id, armcd
from raw.randomisation
where delivery_id = audit.newest_delivery('randomisation')
