"""DuckDB access: connections, publishing, SQL models from ``warehouse/models`` and comments.

Builds never write the published warehouse file that analysts open. They write a work copy
(``<folder>/.work/<name>``) and publish it at the end by copying it next to the published
file and renaming it over it, which is atomic: a reader sees the old or the new warehouse,
never a half-built one, and a build killed at any moment leaves the published file intact.

Files are written with DuckDB storage compatibility v1.2.0 so that analysts' DuckDB 1.x
clients (the ``duckdb`` shell from ``duckdb-cli``, R's duckdb) can open them.
Readers always connect read-only.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from glob import escape as glob_escape
from pathlib import Path
from string import Template
from typing import Any

import duckdb
import polars as pl
import yaml

from pipelines.study import SCHEMAS_DIR, WAREHOUSE_SQL_DIR, load_contracts, load_study

STORAGE_COMPATIBILITY = "v1.2.0"

# Stored with every raw row, after the contract's columns. The file's name, SHA-256 and load
# time are stored once per delivery in audit.delivery, and the raw.<family> views add them to
# each row: repeated on 55 million gene rows they would cost about a third of the load.
ROW_PROVENANCE: dict[str, str] = {
    "delivery_id": "INTEGER",
    "row_number": "BIGINT",
    "extra_columns": "JSON",
}
DELIVERY_PROVENANCE = ("file_name", "file_sha256", "loaded_at")


def work_file(published: Path) -> Path:
    """The work copy a build writes for ``published``."""
    return published.parent / ".work" / published.name


def digest_key_file(published: Path) -> Path:
    """The secret a blinded warehouse keys its file digests with, readable by the build's owner only."""
    return published.parent / f".{published.name}.digest-key"


def read_digest_key(published: Path) -> bytes | None:
    """The warehouse's digest key; None if it has none (an unblinded warehouse, or one built before
    digests were keyed) or if this user may not read it."""
    try:
        return digest_key_file(published).read_bytes()
    except OSError:
        return None


DIGEST_KEY_BYTES = 32


def create_digest_key(published: Path) -> bytes:
    """The digest key of ``published``: a new random one, written owner-only, unless one was
    written first (by the sensor or a build).

    The key is written under another name, synced, then renamed into place, under a lock that
    the sensor and a build both take: a process stopped while writing it left an empty key
    file, which the next build took as the key, and every digest it recorded could then be made
    by anyone. A key file of the wrong length (such a leftover) is replaced: it was never used,
    since the warehouse records no key yet when this is called.
    """
    path = digest_key_file(published)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f"{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = read_digest_key(published)
        if existing is not None and len(existing) == DIGEST_KEY_BYTES:
            return existing
        for left in path.parent.glob(f"{path.name}.writing-*"):
            left.unlink(missing_ok=True)  # a stopped process's (the lock lets one write at a time)
        key = os.urandom(DIGEST_KEY_BYTES)
        written = path.with_name(f"{path.name}.writing-{os.getpid()}")
        descriptor = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(written, path)
        _sync_folder(path.parent)
    return key


def recorded_digest(sha256: str, key: bytes | None) -> str:
    """The digest a warehouse records for a file whose SHA-256 is ``sha256``. A blinded warehouse
    keys it with its secret (HMAC-SHA256): a plain hash of a small delivery would let anyone
    reading the warehouse find its withheld values again, by writing the file for each guessed
    value until the hash matches. Without a key, the SHA-256 itself."""
    return sha256 if key is None else hmac.new(key, sha256.encode("ascii"), hashlib.sha256).hexdigest()


class DigestKeyMissing(RuntimeError):
    """A blinded warehouse whose digests are keyed, without its key."""


def key_check(key: bytes) -> str:
    return hmac.new(key, b"mirocals digest key", hashlib.sha256).hexdigest()


def recorded_digest_key(published: Path, recorded_check: str) -> bytes:
    """The key of a warehouse whose digests are keyed (``audit.digest_key`` holds
    ``recorded_check``); raises :class:`DigestKeyMissing` when its file is missing or another key."""
    key = read_digest_key(published)
    if key is None or key_check(key) != recorded_check:
        raise DigestKeyMissing(
            f"{published}: its file digests are keyed, and its key {digest_key_file(published)} is missing, "
            "unreadable or not the one they were made with. Put the key back (it is in the backup of the "
            "warehouse folder): without it every file would be taken in again."
        )
    return key


def settle_digest_key(con: duckdb.DuckDBPyConnection, published: Path) -> bytes:
    """The key of a blinded warehouse's file digests, checked against the warehouse's record.

    The first build that needs it makes it, and keys the plain SHA-256 digests recorded before
    (``HMAC(key, sha256)`` is computed from them, so nothing is read again). A warehouse whose
    digests are keyed stops a build when its key is missing or another one: every file would
    otherwise look new and be taken in again.
    """
    recorded = con.execute("select key_check from audit.digest_key").fetchone()
    if recorded is not None:
        return recorded_digest_key(published, recorded[0])
    key = create_digest_key(published)  # the one made by the sensor, if it came first
    plain = [sha for (sha,) in con.execute(
        "select file_sha256 from audit.delivery union select file_sha256 from audit.landing_file").fetchall()]
    with atomic(con):
        if plain:
            keyed = pl.DataFrame({"plain": plain, "keyed": [recorded_digest(sha, key) for sha in plain]})
            con.register("_rekeyed", keyed.to_arrow())
            for table in ("audit.delivery", "audit.landing_file"):
                con.execute(f"update {table} set file_sha256 = _rekeyed.keyed from _rekeyed "
                            f"where {table}.file_sha256 = _rekeyed.plain")
            con.unregister("_rekeyed")
        con.execute("insert into audit.digest_key values (?)", [key_check(key)])
    return key


def lock_file(published: Path) -> Path:
    """The lock that keeps builds of ``published`` one at a time."""
    return published.parent / ".work" / f"{published.name}.lock"


def copy_durably(source: Path, target: Path, owner_only: bool = False) -> None:
    """Copy ``source`` to ``target`` and sync it to disk; a copy that fails (a full disk, the
    process stopped) leaves no partial ``target`` behind, bar one a SIGKILL interrupts, which
    :func:`remove_unfinished_copies` removes."""
    try:
        if owner_only:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            os.chmod(target, 0o600)
        shutil.copyfile(source, target)
        with target.open("rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise


# Why a database is copied under a temporary name: a published warehouse on its way in, a work
# copy being seeded (or the published file read while an analyst holds it), a work copy being
# written anew without its freed blocks.
COPY_PURPOSES = ("publishing", "seeding", "rewriting")


def temporary_copy(target: Path, purpose: str) -> Path:
    """This process's temporary name for a copy of a database that becomes (or is read as) ``target``."""
    return target.with_name(f".{target.name}.{purpose}-{os.getpid()}")


def remove_unfinished_copies(*targets: Path) -> list[Path]:
    """Delete the temporary copies of ``targets`` (the published and work files of one
    warehouse) that a killed build left (only a build holding that warehouse's lock may: no
    other build of it is copying). Another warehouse's copies in the same folder are its own
    build's, perhaps being written now. Returns them."""
    left = [path for target in targets if target.parent.is_dir() for purpose in COPY_PURPOSES
            for path in target.parent.glob(f".{glob_escape(target.name)}.{purpose}-*")]  # as temporary_copy names them
    for path in left:
        path.unlink(missing_ok=True)
    return left


def _sync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def rewrite_after_withholding(work: Path) -> int:
    """Write ``work`` anew if a blinded build withheld values it had stored (``audit.withholding``
    rows not yet rewritten). An update leaves the values it overwrote in DuckDB's freed blocks
    until they happen to be reused, and a copy of the file carries them: anyone who can read the
    published file could read them. The new file holds the tables, views and macros only, copied
    by DuckDB (``copy from database``); it replaces ``work`` by a rename once written and synced.
    Returns how many withholdings it covered (0: nothing to rewrite, ``work`` untouched)."""
    rewritten = temporary_copy(work, "rewriting")
    with write_connection(work) as con:
        if not has_table(con, "audit", "withholding"):
            return 0
        pending = con.execute("select count(*) from audit.withholding where rewritten_at is null").fetchone()[0]
        if not pending:
            return 0
        source = con.execute("select current_database()").fetchone()[0]
        alias = f"{source}_rewritten"  # never the source's own name
        rewritten.unlink(missing_ok=True)
        try:
            con.execute("set preserve_insertion_order = true")  # rows stay in delivery order, as built
            con.execute(f'attach ? as "{alias}"', [str(rewritten)])
            con.execute(f'copy from database "{source}" to "{alias}"')
            con.execute(f'update "{alias}".audit.withholding set rewritten_at = ? where rewritten_at is null',
                        [utc_now()])
            con.execute(f'detach "{alias}"')
            with rewritten.open("rb+") as handle:
                os.fsync(handle.fileno())
        except BaseException:
            rewritten.unlink(missing_ok=True)
            raise
    os.chmod(rewritten, stat.S_IMODE(work.stat().st_mode))
    os.replace(rewritten, work)
    _sync_folder(work.parent)
    return pending


def publish(work: Path, published: Path, owner_only: bool = False) -> None:
    """Atomically replace ``published`` with a copy of ``work`` (checkpointed first, and
    written anew first if values were withheld from it: :func:`rewrite_after_withholding`).

    ``owner_only`` creates the published file readable by its owner only (unblinded builds).
    """
    if not rewrite_after_withholding(work):
        with write_connection(work) as con:
            con.execute("checkpoint")
    temporary = temporary_copy(published, "publishing")
    if owner_only:
        work.chmod(0o600)
    copy_durably(work, temporary, owner_only)
    os.replace(temporary, published)
    _sync_folder(published.parent)


def utc_now() -> datetime:
    """Now in UTC, as the warehouse stores times: ``timestamp`` columns hold UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


# Builds keep DuckDB within this much memory and spill the rest to the work folder, so a
# build's footprint does not grow with the number or size of deliveries.
BUILD_MEMORY_LIMIT = "2GB"


def open_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """A write connection to a warehouse file (created with its folder if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        str(path),
        config={
            "storage_compatibility_version": STORAGE_COMPATIBILITY,
            "memory_limit": BUILD_MEMORY_LIMIT,
            "temp_directory": str(path.parent / f".{path.name}.spill"),
            "preserve_insertion_order": False,
        },
    )


@contextmanager
def write_connection(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse for writing, closed on exit."""
    con = open_for_writing(path)
    try:
        yield con
    finally:
        con.close()


READER_SEARCH_PATH = "analysis,core,audit,quarantine,ref,main"


def not_built(path: Path) -> str:
    """What to tell a user who asks for the warehouse ``path`` before any build made it."""
    return f"No warehouse at {path}: run `mirocals build` (or `make demo`) first."


@contextmanager
def read_connection(path: Path, sandboxed: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse read-only; fails clearly if it has not been built.

    ``sandboxed`` also forbids touching any other file (attach, copy, read_parquet) and locks the
    configuration, for SQL typed by a user.
    """
    if not path.exists():
        raise FileNotFoundError(not_built(path))
    config = {"enable_external_access": False, "lock_configuration": True} if sandboxed else {}
    con = duckdb.connect(str(path), read_only=True, config=config)
    # `adbm`, `treg`, `reconciliation` without their schema: the published layers first
    con.execute(f"set search_path = '{READER_SEARCH_PATH}'")
    try:
        yield con
    finally:
        con.close()


def held_by_another_writer(error: duckdb.Error) -> bool:
    """Whether opening a database failed because another process holds it open read-write
    (DuckDB then lets no other process in, read-only included)."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def holds_real_arms(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` reads an unblinded warehouse (its first build wrote ``audit.unblinding``)."""
    return has_table(con, "audit", "unblinding")


@contextmanager
def owner_only_files(restricted: bool) -> Iterator[None]:
    """Files and folders made in the block are readable by their owner only when ``restricted``
    (an export or report of an unblinded warehouse carries the real arms): the process's umask,
    so that no file is readable by others even for the moment before a chmod."""
    if not restricted:
        yield
        return
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def model_sql(layer: str, name: str) -> str:
    """The SELECT statement of one model file, ``warehouse/models/<layer>/<name>.sql``."""
    return (WAREHOUSE_SQL_DIR / layer / f"{name}.sql").read_text(encoding="utf-8")


def run_model(con: duckdb.DuckDBPyConnection, layer: str, name: str, *, view: bool = False) -> int | None:
    """Build ``<layer>.<name>`` from its model file; returns a table's row count (a view's rows
    are not counted: over the gene table that would read every row at every build)."""
    kind = "view" if view else "table"
    with atomic(con):
        con.execute(f"create schema if not exists {layer}")
        # a warehouse built when the model was materialised the other way
        if view and has_table(con, layer, name):
            con.execute(f"drop table {layer}.{name}")
        if not view and has_view(con, layer, name):
            con.execute(f"drop view {layer}.{name}")
        con.execute(f"create or replace {kind} {layer}.{name} as\n{model_sql(layer, name)}")
        apply_comments(con, layer, name)
    return None if view else con.execute(f"select count(*) from {layer}.{name}").fetchone()[0]


def run_incremental_model(
    con: duckdb.DuckDBPyConnection, layer: str, name: str, family: str, unique_key: str | None = None
) -> int:
    """Bring the incremental model ``<layer>.<name>`` up to date; returns its row count.

    The model file selects rows for the accepted deliveries of ``family`` that the model has not
    taken in yet, which it reads from the temporary table ``new_deliveries``. Its rows are
    appended or, with ``unique_key``, replace the stored rows with the same key. Which
    deliveries were taken in, by which version of the SQL and as judged when, is kept in
    ``audit.incremental_state``; when the SQL changes, or a delivery taken in was judged again
    since (the rules changed), the model is rebuilt from every delivery.
    """
    key = f"{layer}.{name}"
    sql = model_sql(layer, name)
    version = hashlib.sha256(sql.encode("utf-8")).hexdigest()
    exists = has_table(con, layer, name)
    stale = con.execute(
        "select count(*) from audit.incremental_state as state "
        "left join audit.newest_judgment() as judgment using (delivery_id) "
        "where state.model = ? and (state.model_sha256 <> ? or state.judged_at is distinct from judgment.validated_at)",
        [key, version],
    ).fetchone()[0]
    with atomic(con):
        if stale or not exists:
            con.execute(f"drop {'view' if has_view(con, layer, name) else 'table'} if exists {key}")
            con.execute("delete from audit.incremental_state where model = ?", [key])
        con.execute(
            "create or replace temp table new_deliveries as select delivery_id from audit.delivery "
            "where family = ? and status = 'accepted' and delivery_id not in "
            "(select delivery_id from audit.incremental_state where model = ?)",
            [family, key],
        )
        con.execute(f"create schema if not exists {layer}")
        if stale or not exists:
            con.execute(f"create table {key} as\n{sql}")
        else:
            con.execute(f"create or replace temp table increment as\n{sql}")
            if unique_key:
                con.execute(f"delete from {key} where {unique_key} in (select {unique_key} from increment)")
            con.execute(f"insert into {key} select * from increment")
        con.execute(
            "insert into audit.incremental_state (model, delivery_id, model_sha256, processed_at, judged_at) "
            "select ?, delivery_id, ?, now()::timestamp, judgment.validated_at from new_deliveries "
            "left join audit.newest_judgment() as judgment using (delivery_id)",
            [key, version],
        )
        apply_comments(con, layer, name)
    return con.execute(f"select count(*) from {key}").fetchone()[0]


def has_table(con: duckdb.DuckDBPyConnection, schema: str, name: str, database: str | None = None) -> bool:
    """Whether ``<schema>.<name>`` is a table of the connection's own database, or of the
    attached ``database``."""
    return con.execute(
        "select count(*) > 0 from duckdb_tables() where database_name = coalesce(?, current_database()) "
        "and schema_name = ? and table_name = ?",
        [database, schema, name],
    ).fetchall()[0][0]  # fetched to the end: DuckDB refuses a relation on a connection with a result pending


def has_view(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether ``<schema>.<name>`` is a view of the connection's own database."""
    return con.execute(
        "select count(*) > 0 from duckdb_views() where database_name = current_database() "
        "and schema_name = ? and view_name = ?",
        [schema, name],
    ).fetchall()[0][0]


def query_sql(name: str) -> str:
    """A query from ``warehouse/queries/<name>.sql``."""
    return (WAREHOUSE_SQL_DIR.parent / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def ddl_sql(name: str) -> str:
    """The text of a DDL script in ``warehouse/ddl``."""
    return (WAREHOUSE_SQL_DIR.parent / "ddl" / f"{name}.sql").read_text(encoding="utf-8")


@contextmanager
def atomic(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block as one transaction: all of its writes are stored, or none of them.

    It also spares a build most of its commits: outside a transaction every statement commits
    on its own, and each commit writes and syncs DuckDB's log (a model's column comments alone
    are a dozen statements). DuckDB has no nested transactions: a block inside another fails.
    """
    con.begin()
    try:
        yield con
        con.commit()
    except BaseException:
        try:
            con.rollback()
        except duckdb.Error:
            pass  # DuckDB rolled back itself (a commit that failed: a full disk): its error is the one to tell
        raise


def run_ddl(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Run a DDL script from ``warehouse/ddl`` (idempotent ``create ... if not exists``)."""
    con.execute(ddl_sql(name))


@cache
def _tables_yaml() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS_DIR / "tables.yaml").read_text(encoding="utf-8"))


def table_docs() -> dict[str, dict[str, Any]]:
    """Published table documentation from ``schemas/tables.yaml``, keyed ``schema.table``."""
    return _tables_yaml()["tables"]


def sas_labels() -> dict[str, str]:
    """The CDISC labels of the analysis tables' variables, by name (``schemas/tables.yaml``)."""
    return _tables_yaml()["sas_labels"]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def apply_comments(con: duckdb.DuckDBPyConnection, layer: str, name: str) -> None:
    """Write table and column comments for ``layer.name`` from ``schemas/tables.yaml``."""
    doc = table_docs().get(f"{layer}.{name}")
    if doc is None:
        return
    kind = "view" if has_view(con, layer, name) else "table"
    con.execute(f"comment on {kind} {layer}.{name} is {_quote(doc['description'].strip())}")
    existing = {
        r[0]
        for r in con.execute(
            "select column_name from duckdb_columns() where schema_name = ? and table_name = ?", [layer, name]
        ).fetchall()
    }
    for column, text in doc.get("columns", {}).items():
        if column in existing:
            con.execute(f"comment on column {layer}.{name}.{column} is {_quote(str(text).strip())}")


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create, for every delivery family, ``raw.<family>__rows`` (the delivered rows, from the
    contract, plus delivery and row number) and the view ``raw.<family>``: each row as delivered
    with its provenance (delivery_id, file_name, file_sha256, row_number, loaded_at)."""
    con.execute("create schema if not exists raw")
    for family in load_contracts().families.values():
        name = family.family
        _move_provenance_to_deliveries(con, name)
        columns = [f"{c.name} {c.type}" for c in family.columns]
        columns += [f"{column} {type_}" for column, type_ in ROW_PROVENANCE.items()]
        con.execute(f"create table if not exists raw.{name}__rows ({', '.join(columns)})")
        delivered = ", ".join(f"delivered.{c.name}" for c in family.columns)
        con.execute(
            f"""
            create or replace view raw.{name} as
            select {delivered}, delivered.delivery_id, delivery.file_name, delivery.file_sha256,
                delivered.row_number, delivery.received_at as loaded_at, delivered.extra_columns
            from raw.{name}__rows as delivered
            join audit.delivery as delivery using (delivery_id)
            """
        )
        description = _quote("As delivered: " + family.description)
        con.execute(f"comment on view raw.{name} is {description}")
        con.execute(f"comment on table raw.{name}__rows is {description}")
        for c in family.columns:
            con.execute(f"comment on column raw.{name}.{c.name} is {_quote(c.description)}")


def _move_provenance_to_deliveries(con: duckdb.DuckDBPyConnection, family: str) -> None:
    """A warehouse built before raw.<family> became a view keeps its rows: the table becomes
    raw.<family>__rows without the columns that audit.delivery holds."""
    if has_table(con, "raw", family):
        con.execute(f"alter table raw.{family} rename to {family}__rows")
        for column in DELIVERY_PROVENANCE:
            con.execute(f"alter table raw.{family}__rows drop column {column}")


def load_reference_tables(
    con: duckdb.DuckDBPyConnection,
    arms: tuple[dict[str, str], ...] | None = None,
    withheld: tuple[tuple[str, str], ...] = (),
) -> dict[str, int]:
    """Write the study definition into ``ref.*`` tables; returns row counts.

    ``arms`` are the arms this build carries (masked codes in a blinded build); ``withheld`` the
    (family, column) whose values it does not store (a blinded build's), in ``ref.withheld_value``.
    """
    study = load_study()
    con.execute("create schema if not exists ref")
    tables: dict[str, list[dict[str, Any]]] = {
        "site": [{"siteid": s.siteid, "site_name": s.name, "country": s.country} for s in study.sites],
        "arm": [{"armcd": a["armcd"], "arm": a["arm"], "description": a["description"]} for a in (arms or study.arms)],
        "visit": [
            {
                "visit_code": v.visit_code,
                "visit_num": v.visit_num,
                "visit_label": v.label,
                "target_day": v.study_day,
                "window_lo": v.window_lo,
                "window_hi": v.window_hi,
            }
            for v in study.visits
        ],
        "visit_matrix": [
            {"visit_code": v.visit_code, "matrix": m} for v in study.visits for m in v.matrices
        ],
        "parameter": [
            {
                "paramcd": p.paramcd,
                "param": p.param,
                "family": p.family,
                "source_column": p.source.get("column"),
                "source_analyte": p.source.get("analyte"),
                "matrix": p.matrix,
                "unit": p.unit,
                "lloq": p.lloq,
                "uloq": p.uloq,
                "plausible_lo": p.plausible[0],
                "plausible_hi": p.plausible[1],
                "limit_tolerance": study.raw["limit_tolerance_factor"],
                "treatment_revealing": p.treatment_revealing,
            }
            for p in study.parameters
        ],
        "parameter_unit": [
            {"paramcd": p.paramcd, "unit_reported": u, "factor": f} for p in study.parameters for u, f in p.units.items()
        ],
        "parameter_visit": [{"paramcd": p.paramcd, "visit_code": v} for p in study.parameters for v in p.visits],
        "result_censoring": [
            {"qualifier": qualifier, "pattern": pattern}
            for qualifier, key in (("<", "below"), (">", "above"))
            for pattern in study.raw["censored_results"][key]
        ],
    }
    counts = {}
    for name, rows in tables.items():
        frame = pl.DataFrame(rows, infer_schema_length=None)
        con.register("_ref_rows", frame.to_arrow())
        con.execute(f"create or replace table ref.{name} as select * from _ref_rows")
        con.unregister("_ref_rows")
        apply_comments(con, "ref", name)
        counts[name] = len(rows)
    con.execute("create or replace table ref.withheld_value (family varchar not null, column_name varchar not null)")
    if withheld:
        con.executemany("insert into ref.withheld_value values (?, ?)", [list(pair) for pair in withheld])
    apply_comments(con, "ref", "withheld_value")
    counts["withheld_value"] = len(withheld)
    patterns = {
        key: _quote("|".join(f"(?:{pattern})" for pattern in study.raw["censored_results"][key]))
        for key in ("below", "above")
    }
    con.execute(Template(ddl_sql("censoring")).substitute(patterns))
    gene = study.gene_expression
    con.execute(
        "create or replace table ref.gene_expression as select ? as matrix, ? as unit, ? as plausible_lo, ? as plausible_hi",
        [gene["matrix"], gene["unit"], float(gene["plausible"][0]), float(gene["plausible"][1])],
    )
    apply_comments(con, "ref", "gene_expression")
    return counts
