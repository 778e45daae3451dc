-- One row per subject who entered the run-in, with site, strata and arm.
with

subject as (
    select * from staging.stg_trial__subject where is_current
),

randomisation as (
    select * from staging.stg_trial__randomisation where is_current
),

final as (
    select
        -- identity and site
        subject.usubjid,
        site.siteid,
        site.site_name,
        site.country,

        -- demography and disease
        subject.sex,
        subject.age,
        subject.onset,
        site.country || '-' || subject.onset        as stratum,
        subject.diagnosis_date,

        -- trial milestones
        subject.consent_date,
        subject.randomisation_date,
        subject.randomisation_date is not null      as randomised,
        subject.death_date,
        subject.withdrawal_date,
        subject.withdrawal_reason,

        -- treatment
        randomisation.armcd,
        arm.arm,

        -- provenance
        subject.delivery_id,
        subject.file_name,
        subject.row_number
    from subject
    left join ref.site as site using (siteid)
    left join randomisation
        on randomisation.usubjid = subject.usubjid and subject.randomisation_date is not null
    left join ref.arm as arm using (armcd)
)

select * from final
