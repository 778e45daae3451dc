-- Audit trail of every delivery seen in the landing zone. Append-only.
create schema if not exists audit;

create table if not exists audit.delivery (
    delivery_id     integer primary key,   -- sequence in order of arrival; newest wins on corrections
    family          varchar not null,      -- delivery family (schemas/deliveries.yaml)
    file_name       varchar not null,      -- path relative to the landing zone
    file_sha256     varchar not null,      -- SHA-256 of the file's bytes
    file_bytes      bigint not null,
    rows_delivered  bigint,                -- rows in the file; null if the file could not be read
    status          varchar not null,      -- accepted | rejected | duplicate
    rule            varchar,               -- for rejected and duplicate files: the contract rule
    reason          varchar,               -- readable reason, naming the file and the column
    warnings        varchar,               -- accepted with remarks (extra columns, renamed headers)
    duplicate_of    integer,               -- for duplicate files: the delivery with the same bytes
    received_at     timestamp not null
);

-- The file-system record of each landing file when it was last hashed, so that a build does not
-- read every earlier delivery again (see SETTLED_SECONDS in pipelines/ingest/delivery.py). A
-- file whose record changed is hashed again.
create table if not exists audit.landing_file (
    file_name       varchar primary key,   -- path relative to the landing zone
    file_sha256     varchar not null,      -- SHA-256 of the bytes hashed under this record
    file_bytes      bigint not null,
    mtime_ns        bigint not null,
    ctime_ns        bigint not null,
    inode           bigint not null,
    device          bigint not null
);

-- One row per delivered row that failed a Great Expectations expectation, in one judgment of
-- its delivery (validated_at, as in audit.validation). A delivery judged again when the rules
-- changed keeps the failures of its earlier judgments; staging reads the newest judgment's.
create table if not exists audit.row_failure (
    delivery_id     integer not null,
    row_number      bigint not null,
    rule            varchar not null,
    column_name     varchar,
    reason          varchar not null,
    validated_at    timestamp
);

-- One row per delivery x expectation x judgment: the Great Expectations suite outcome, and the
-- version of the rules it was judged by (pipelines/ingest/expectations.py rules_version).
create table if not exists audit.validation (
    delivery_id      integer not null,
    suite            varchar not null,
    rule             varchar not null,
    expectation_type varchar not null,
    column_name      varchar,
    success          boolean not null,
    element_count    bigint,
    unexpected_count bigint,
    examples         json,
    validated_at     timestamp not null,
    rules_sha256     varchar                -- null: judged before versions were recorded
);

-- A warehouse from before judgments were versioned: one judgment per delivery, its failures
-- take that judgment's time.
alter table audit.validation add column if not exists rules_sha256 varchar;
alter table audit.row_failure add column if not exists validated_at timestamp;
update audit.row_failure as failure set validated_at = judged.validated_at
from (select delivery_id, min(validated_at) as validated_at from audit.validation group by delivery_id) as judged
where failure.validated_at is null and failure.delivery_id = judged.delivery_id;

-- Incremental models: which deliveries each one has taken in, by which version of its SQL and
-- as judged when. A model whose SQL changed, or that took in a delivery judged again since, is
-- rebuilt from every delivery.
create table if not exists audit.incremental_state (
    model           varchar not null,      -- schema.table
    delivery_id     integer not null,
    model_sha256    varchar not null,      -- SHA-256 of the model file that took the delivery in
    processed_at    timestamp not null,
    judged_at       timestamp              -- the delivery's newest judgment then (audit.newest_judgment)
);
alter table audit.incremental_state add column if not exists judged_at timestamp;

-- Rows of a delivery whose key (for the gene table: sample and gene) may occur more than once in
-- that delivery, found when the file was taken in. Keys are compared ignoring case and
-- surrounding whitespace, more loosely than staging does: staging then judges these rows only.
create table if not exists audit.repeated_key_row (
    delivery_id     integer not null,
    row_number      bigint not null
);

-- A blinded warehouse keys the file digests it records (pipelines/warehouse.py settle_digest_key):
-- a check value of its key, so that a missing or other key stops a build instead of making every
-- file look new.
create table if not exists audit.digest_key (
    key_check varchar not null   -- HMAC-SHA256 of a fixed text under the key
);

-- Values a blinded build withheld from the rows and judgments it had stored (a column or gene
-- marked treatment-revealing since). DuckDB leaves what an update overwrote in freed blocks of the
-- file, readable by anyone who can read the file, so the next publish first writes the warehouse
-- into a new file (pipelines/warehouse.py rewrite_after_withholding) and stamps rewritten_at.
create table if not exists audit.withholding (
    delivery_id     integer not null,
    family          varchar not null,
    values_withheld bigint not null,       -- stored rows and judgments that lost a value
    withheld_at     timestamp not null,
    rewritten_at    timestamp              -- null: the file may still hold the values, in freed blocks
);
