-- Subjects of the newest subjects export (a full snapshot, as in staging) with their
-- randomisation stratum: the input of the blinded build's dummy randomisation and of the checks
-- on a real randomisation list.
with

latest as (
    select
        upper(trim(usubjid)) as usubjid,
        siteid,
        upper(trim(onset)) as onset,
        randomisation_date,
        row_number() over (partition by upper(trim(usubjid)) order by row_number desc) as recency
    from raw.subjects
    where delivery_id = audit.newest_delivery('subjects')
)

select
    latest.usubjid,
    latest.randomisation_date is not null   as randomised,
    site.country || '-' || latest.onset     as stratum,
    latest.randomisation_date
from latest
left join ref.site as site using (siteid)
where latest.recency = 1
order by latest.randomisation_date, latest.usubjid
