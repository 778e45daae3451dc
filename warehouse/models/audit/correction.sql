-- Every loaded value that a later delivery replaced: the value before and after, the delivery
-- that replaced it and when; and every subject or sample that the newest snapshot export
-- removed (missing from it, or held back there): removed, with the export that removed it.
-- Nothing is corrected or removed without a row here. Only keys with a valid row that is no
-- longer current are looked at.
with

versions as (
    select 'subjects' as family, usubjid as record_key, delivery_id, file_name, row_number,
        to_json(struct_pack(siteid, sex, age, onset, diagnosis_date, consent_date, randomisation_date,
            death_date, withdrawal_date, withdrawal_reason)) as delivered_values, is_current
    from staging.stg_trial__subject where qc_rule is null
        and usubjid in (select usubjid from staging.stg_trial__subject where qc_rule is null and not is_current)
    union all
    select 'sample_manifest', sample_id, delivery_id, file_name, row_number,
        to_json(struct_pack(usubjid, visit_code, matrix, collection_datetime)), is_current
    from staging.stg_biobank__sample where qc_rule is null
        and sample_id in (select sample_id from staging.stg_biobank__sample where qc_rule is null and not is_current)
    union all
    select 'treg', sample_id, delivery_id, file_name, row_number,
        to_json(struct_pack(cd4_count, treg_count, treg_pct_cd4, panel_version, acquisition_date)), is_current
    from staging.stg_lab__treg where qc_rule is null
        and sample_id in (select sample_id from staging.stg_lab__treg where qc_rule is null and not is_current)
    union all
    select 'neurofilament', sample_id || ' ' || analyte, delivery_id, file_name, row_number,
        to_json(struct_pack(result, unit, lloq, uloq, dilution, plate_id, run_date, cv_pct)), is_current
    from staging.stg_lab__neurofilament where qc_rule is null
        and (sample_id, analyte) in (select sample_id, analyte from staging.stg_lab__neurofilament
            where qc_rule is null and not is_current)
    union all
    select 'transcript_summary', sample_id, delivery_id, file_name, row_number,
        to_json(struct_pack(total_reads_m, pct_mapped, rin, treg_signature, run_id)), is_current
    from staging.stg_lab__transcript_summary where qc_rule is null
        and sample_id in (select sample_id from staging.stg_lab__transcript_summary where qc_rule is null and not is_current)
    union all
    select 'transcript_gene', latest.sample_id || ' ' || latest.gene_id, delivery_id, loaded.file_name, row_number,
        to_json(struct_pack(latest.gene_symbol, latest.expression)), latest.is_latest
    -- the gene table is large: its keys delivered more than once are listed, with their values,
    -- in int_transcript_gene__latest (valid rows only), so it is not read here
    from staging.int_transcript_gene__latest as latest
    join audit.delivery as loaded using (delivery_id)
    where (latest.sample_id, latest.gene_id) in (
            select sample_id, gene_id from staging.int_transcript_gene__latest where not is_latest)
        and (delivery_id, latest.sample_id) in (
            select delivery_id, sample_id from staging.int_transcript_gene__sample_verdicts where qc_rule is null)
),

sequenced as (
    select
        *,
        lead(delivery_id) over by_key      as next_delivery_id,
        lead(file_name) over by_key        as next_file_name,
        lead(row_number) over by_key       as next_row_number,
        lead(delivered_values) over by_key as next_values
    from versions
    window by_key as (partition by family, record_key order by delivery_id, row_number)
)

select
    sequenced.family,
    sequenced.record_key,
    sequenced.delivery_id                   as superseded_delivery_id,
    sequenced.file_name                     as superseded_file_name,
    sequenced.row_number                    as superseded_row_number,
    sequenced.delivered_values              as superseded_values,
    delivery.delivery_id                    as replaced_by_delivery_id,
    delivery.file_name                      as replaced_by_file_name,
    sequenced.next_row_number               as replaced_by_row_number,
    sequenced.next_values                   as replacing_values,
    delivery.received_at                    as replaced_at,
    sequenced.next_delivery_id is null      as removed,
    case
        when sequenced.next_delivery_id is null then true
        when sequenced.delivered_values <> sequenced.next_values then true
        -- a blinded build compares only what it stores: where a withheld value is missing from
        -- either version, whether the key's values changed is not known
        when exists (
            select 1 from ref.withheld_value as withheld
            where withheld.family = sequenced.family
                and (sequenced.delivered_values ->> withheld.column_name is null
                    or sequenced.next_values ->> withheld.column_name is null)
        ) then null
        else false
    end                                     as value_changed
from sequenced
-- the last valid version of a key replaces nothing: if it is not current either, the newest
-- export of its (snapshot) family removed the key
join audit.delivery as delivery
    on delivery.delivery_id = coalesce(sequenced.next_delivery_id, audit.newest_delivery(sequenced.family))
where sequenced.next_delivery_id is not null or not sequenced.is_current
