-- Table macro used by the quarantine model: the rows a staging model held back, with the
-- row exactly as delivered (contract columns and any extra columns, as JSON).
create schema if not exists quarantine;

-- The held-back rows are found first and only then matched to their delivered rows: for the
-- gene table the staging model is a view over raw, and joining before filtering would match
-- every row of the table.
create or replace macro quarantine.rejected_rows_of(family_name, staged, delivered) as table
with held as materialized (
    select delivery_id, file_name, row_number, qc_rule, qc_reason
    from query_table(staged)
    where qc_rule is not null
)
select
    family_name                     as family,
    held.delivery_id,
    held.file_name,
    held.row_number,
    held.qc_rule                    as rule,
    held.qc_reason                  as reason,
    to_json(struct_pack(*columns(delivered.* exclude (delivery_id, file_name, file_sha256, row_number, loaded_at))))
                                    as delivered_row
from held
join query_table(delivered) as delivered using (delivery_id, row_number);
