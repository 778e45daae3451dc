-- Unblinded builds only: who unblinded the warehouse, when, and with which list.
create schema if not exists audit;

create table if not exists audit.unblinding (
    unblinded_at            timestamp not null,   -- UTC
    unblinded_by            varchar not null,     -- operating-system user who ran the build
    randomisation_file      varchar not null,
    randomisation_sha256    varchar not null
);
