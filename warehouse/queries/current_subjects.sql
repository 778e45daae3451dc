-- Subjects of the newest subjects export with their randomisation stratum: the input of the
-- blinded build's dummy randomisation and of the checks on a real randomisation list.
with

latest as (
    select
        upper(trim(usubjid)) as usubjid,
        siteid,
        upper(trim(onset)) as onset,
        randomisation_date,
        row_number() over (
            partition by upper(trim(usubjid)) order by delivery_id desc, row_number desc
        ) as recency
    from raw.subjects
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
