-- The newest accepted delivery of a family. For a snapshot family (subjects, sample manifest)
-- it is the export that decides what is current; staging, the corrections audit, the dummy
-- randomisation and the duplicate check on arrival all ask this one question.
create or replace macro audit.newest_delivery(family_name) as (
    select max(delivery_id) from audit.delivery where family = family_name and status = 'accepted'
);

-- Each delivery's newest Great Expectations judgment: when it was made and by which version of
-- the rules. A delivery judged again when the rules changed keeps its earlier judgments in
-- audit.validation and audit.row_failure; the newest counts (staging reads its failures, a build
-- judges a delivery again when its version is not the current one).
create or replace macro audit.newest_judgment() as table
select
    delivery_id,
    max(validated_at)                           as validated_at,
    arg_max_null(rules_sha256, validated_at)    as rules_sha256
from audit.validation
group by delivery_id;

-- Table macro used by the quarantine model: the rows a staging model held back, with the
-- row exactly as delivered (contract columns and any extra columns, as JSON).
create schema if not exists quarantine;

create or replace macro quarantine.rejected_rows_of(family_name, staged, delivered) as table
select
    family_name                     as family,
    staged.delivery_id,
    staged.file_name,
    staged.row_number,
    staged.qc_rule                  as rule,
    staged.qc_reason                as reason,
    to_json(struct_pack(*columns(delivered.* exclude (delivery_id, file_name, file_sha256, row_number, loaded_at))))
                                    as delivered_row
from query_table(staged) as staged
join query_table(delivered) as delivered using (delivery_id, row_number)
where staged.qc_rule is not null;
