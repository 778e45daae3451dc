-- Files in the landing zone outside every delivery family's folder. No build takes them in;
-- they are listed here (again at every build) so that a file dropped in the wrong place is seen.
create schema if not exists quarantine;
create or replace table quarantine.unrecognised_files (
    file_name   varchar   not null,
    file_bytes  bigint    not null,
    modified_at timestamp not null,
    reason      varchar   not null
);
