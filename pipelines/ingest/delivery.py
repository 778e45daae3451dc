"""Take in one delivered Parquet file: check it against its contract, load it into ``raw``.

A file is rejected whole (and recorded in ``audit.delivery`` with the reason) when it cannot
be read, has no rows, carries a column that looks like personal data, lacks a required
column, or has a column whose values cannot be read as the declared type. Otherwise every
row is loaded into ``raw.<family>`` with its provenance, and the family's Great Expectations
suite runs on it; failing rows are recorded in ``audit.row_failure`` and quarantined by the
staging models. Nothing is deleted from the landing zone.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.blinding import (
    WITHHELD, BlindingMode, mentions_revealing, withheld_values, withhold_revealing_failures, withhold_revealing_values,
    withhold_stored_values,
)
from pipelines.ingest.expectations import (
    EXAMPLES_PER_EXPECTATION, PendingPages, RowFailure, SuiteResult, discard_pending_pages, redact_data_docs,
    rules_version, store_validation_results, suite_parameters, validate_table,
)
from pipelines.ingest.values import distinct_codes, in_set
from pipelines.study import FamilyContract, load_contracts
from pipelines.warehouse import atomic, query_sql, recorded_digest, utc_now


# A clustered delivery is sorted and inserted this many rows at a time (bounds the sorted copy).
ROWS_PER_INSERT = 2_000_000


class DeliveryNotTakenIn(RuntimeError):
    """A file this build cannot take in (unreadable, or still being written): nothing of it is
    recorded, the other files are taken in, and the next build tries it again."""


class DeliveryChanged(DeliveryNotTakenIn):
    """A file that changed between being hashed and being read: nothing of it is loaded."""


class DeliveryRejected(Exception):
    """A delivered file that cannot be loaded at all; ``rule`` names the contract rule."""

    def __init__(self, file_name: str, rule: str, reason: str, rows: int | None = None):
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.rule = rule
        self.reason = reason
        self.rows = rows


@dataclass
class CheckedDelivery:
    """A delivery that passed its contract: declared columns cast, plus extras kept as JSON."""

    family: str
    file_name: str
    table: pa.Table
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: int
    family: str
    file_name: str
    status: str
    rows_delivered: int | None
    rows_failing_expectations: int
    reason: str | None
    validation: SuiteResult | None
    data_docs: list[Path] = field(default_factory=list)
    warnings: str | None = None  # the remarks an accepted delivery is recorded with
    # its validation results, stored for the Data Docs site with the judgment; pages not rendered yet
    pending_pages: PendingPages | None = None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# A file already taken in is recognised by its file-system record instead of being read and
# hashed again at every build, as earlier deliveries pile up. Any write, copy or move gives a file
# a new change time (ctime, which no program can set back), so a record stands only for the bytes
# that were hashed. A file changed less than this long before it was hashed is not remembered (a
# write within the same clock tick could leave its ctime as it was): it is hashed again next time.
SETTLED_SECONDS = 2


# audit.landing_file's columns of a file's record, in the order of FileStat's fields
FILE_STAT_COLUMNS = ("file_bytes", "mtime_ns", "ctime_ns", "inode", "device")


@dataclass(frozen=True)
class FileStat:
    """What the file system says of a file: size, modification and change times, inode, device."""

    file_bytes: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: Path) -> FileStat:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


def taken_in_unchanged(con: duckdb.DuckDBPyConnection, records: dict[str, FileStat]) -> set[str]:
    """Of ``records`` (file name: its record now), the names taken in (whatever the verdict)
    that have not changed since (``warehouse/queries/unchanged_landing_files.sql``)."""
    if not records:
        return set()
    stats = [astuple(stat) for stat in records.values()]
    listing = pa.table({"file_name": pa.array(list(records), pa.string()),
                        **{name: pa.array([s[i] for s in stats], pa.int64()) for i, name in enumerate(FILE_STAT_COLUMNS)}})
    con.register("landing_listing", listing)
    try:
        return {name for name, in con.execute(query_sql("unchanged_landing_files")).fetchall()}
    finally:
        con.unregister("landing_listing")


def files_to_take_in(con: duckdb.DuckDBPyConnection, landing: Path, paths: list[Path]) -> list[Path]:
    """``paths`` less the files taken in and unchanged since, answered for the whole folder at
    once (a query per file cost more with every delivery); a file that cannot be looked at is
    kept, for :func:`ingest_file` to say why."""
    records = {}
    for path in paths:
        try:
            records[path.relative_to(landing).as_posix()] = FileStat.of(path)
        except OSError:
            continue
    unchanged = taken_in_unchanged(con, records)
    return [path for path in paths if path.relative_to(landing).as_posix() not in unchanged]


def current_bytes(con: duckdb.DuckDBPyConnection, file_name: str) -> set[str]:
    """SHA-256 of ``file_name``'s newest delivery and of its newest accepted one: the bytes that
    need not be taken in again (warehouse/queries/taken_in_bytes.sql)."""
    found = con.execute(
        f"select newest_sha256, loaded_sha256 from ({query_sql('taken_in_bytes')}) where file_name = ?", [file_name]
    ).fetchone()
    return {sha for sha in found or () if sha is not None}


def _remember_file(con: duckdb.DuckDBPyConnection, file_name: str, sha: str, stat: FileStat | None) -> None:
    if stat is not None:
        con.execute("insert or replace into audit.landing_file values (?, ?, ?, ?, ?, ?, ?)",
                    [file_name, sha, *astuple(stat)])


def _settled_stat(path: Path, before: FileStat, hashed_at_ns: int) -> FileStat | None:
    """The file's record if it can stand for the bytes just hashed, else None."""
    if FileStat.of(path) != before or hashed_at_ns - before.ctime_ns < SETTLED_SECONDS * 1_000_000_000:
        return None
    return before


PARQUET_SUFFIX = ".parquet"


def delivery_order(name: str) -> tuple:
    """Where a file named ``name`` (its path in the landing zone) comes in delivery order.

    Names compare ignoring case, numbers by value, and a name before a longer name it starts
    (its extension aside): ``nfl_batch9`` before ``nfl_batch10``, ``nfl_batch02.parquet`` before
    ``NfL_batch02-corrected.parquet`` and ``nfl_batch02_corrected.parquet``, which correct it.
    """
    stem, suffix = posixpath.splitext(name)
    parts = re.split(r"(\d+)", stem.casefold())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), suffix.casefold()


def discover_files(landing: Path, contract: FamilyContract) -> list[Path]:
    """Files waiting in a family's folder, in delivery order (:func:`delivery_order`); names
    equal but for case by when they were written.

    Every file counts, whatever its name ends with: one that is not ``*.parquet`` (any case) is
    refused by :func:`check_delivery` and recorded, never skipped unseen. Paths with a part
    starting with ``_`` or ``.`` (work folders, partial uploads) are ignored.
    """
    folder = landing / contract.folder
    if not folder.is_dir():
        return []

    def order(path: Path) -> tuple:
        # names equal but for case (a correction sent as NF_BATCH04 next to nf_batch04): the one
        # written last comes last, as it arrived
        try:
            written = path.stat().st_mtime_ns
        except OSError:
            written = 0
        return delivery_order(path.relative_to(folder).as_posix()), written, path.as_posix()

    return sorted(
        (
            p
            for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(landing).parts)
            and name_is_text(p)
        ),
        key=order,
    )


def name_is_text(path: Path) -> bool:
    """Whether a file's name is UTF-8 text. A name in another encoding (a Latin-1 é from a
    Windows share) can be recorded by no build: :func:`unrecognised_files` lists it."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """A file name as the warehouse can store it: bytes that are not UTF-8 escaped (\\xe9)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unrecognised_files(landing: Path, contracts: list[FamilyContract]) -> list[Path]:
    """Files in the landing zone that no build takes in: outside every family's folder, or named
    in another encoding than UTF-8 (paths with a part starting with ``_`` or ``.`` ignored, as in
    :func:`discover_files`)."""
    if not landing.is_dir():
        return []
    folders = [landing / contract.folder.strip("/") for contract in contracts]
    return sorted(
        p for p in landing.rglob("*")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(landing).parts)
        and (not any(p.is_relative_to(folder) for folder in folders) or not name_is_text(p))
    )


def _normalise(name: str) -> str:
    return name.strip().lower()


# A column name that is a delivered value: a number, a date, a trial or sample identifier.
_VALUE_LIKE_NAME = re.compile(
    r"[-+]?[0-9]+(?:[.,][0-9]+)?(?:e[-+]?[0-9]+)?"
    r"|[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}(?:[ T][0-9:.]+)?"
    r"|[A-Za-z]{1,4}[0-9]{4,}|[A-Za-z]+-[A-Za-z]{2}[0-9]{2}-[0-9]{4}",
    re.IGNORECASE,
)


def _named_like_a_value(name: str) -> bool:
    return _VALUE_LIKE_NAME.fullmatch(name.strip()) is not None


def _wrong_folder_hint(present: set[str], contract: FamilyContract) -> str:
    for other in load_contracts().families_with_columns(present):
        if other.family != contract.family:
            return f" The columns match the {other.family} family: was the file dropped in the wrong folder ({other.folder} expected)?"
    return ""


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type)


def _field_paths(schema: pa.Schema) -> list[tuple[str, str]]:
    """(path, name) of every column, and of the fields inside struct (and list or map of struct)
    columns, their path as ``a.b``: a name may hold a dot itself (``DOB (dd.mm.yyyy)``)."""
    def walk(path: str, name: str, data_type: pa.DataType) -> list[tuple[str, str]]:
        while _is_list(data_type) or pa.types.is_map(data_type):
            data_type = data_type.item_type if pa.types.is_map(data_type) else data_type.value_type
        inner = [f for f in data_type] if pa.types.is_struct(data_type) else []
        return [(path, name), *(p for f in inner for p in walk(f"{path}.{f.name}", f.name, f.type))]

    return [p for f in schema for p in walk(f.name, f.name, f.type)]


def _holds_map(data_type: pa.DataType) -> bool:
    if pa.types.is_map(data_type):
        return True
    if _is_list(data_type):
        return _holds_map(data_type.value_type)
    return pa.types.is_struct(data_type) and any(_holds_map(f.type) for f in data_type)


def _maps(name: str, array: pa.Array) -> Iterator[tuple[str, pa.MapArray]]:
    """Every map in ``array`` (maps in structs, lists and map values too), with its path as ``a.b``."""
    if pa.types.is_map(array.type):
        yield name, array
        yield from _maps(name, array.items)
    elif _is_list(array.type):
        yield from _maps(name, array.flatten())
    elif pa.types.is_struct(array.type):
        for f, child in zip(array.type, array.flatten()):
            yield from _maps(f"{name}.{f.name}", child)


def _map_keys(path: Path, schema: pa.Schema) -> list[tuple[str, str]]:
    """(map path, key) for every distinct text key of the file's map columns: keys are data, not schema,
    so a map can name personal data (``extra: {dob: ..., name: ...}``) under a harmless column name.
    Only the map columns are read."""
    columns = list(dict.fromkeys(f.name for f in schema if _holds_map(f.type)))
    if not columns:
        return []
    with pq.ParquetFile(path) as parquet:
        table = parquet.read(columns=columns)  # unlike pq.read_table, reads every column of a repeated name
    found = [
        (map_path, key)
        for column, array in zip(table.column_names, table.columns)
        for chunk in array.chunks
        for map_path, maps in _maps(column, chunk)
        if pa.types.is_string(maps.type.key_type) or pa.types.is_large_string(maps.type.key_type)
        for key in pc.unique(maps.keys).to_pylist()
    ]
    return list(dict.fromkeys(found))


def check_delivery(path: Path, file_name: str, contract: FamilyContract) -> CheckedDelivery:
    """Read ``path`` and hold it against ``contract``; raises :class:`DeliveryRejected`."""
    if path.suffix.lower() != PARQUET_SUFFIX:
        raise DeliveryRejected(
            file_name, "parquet_file",
            f"not a Parquet delivery: deliveries are Parquet files named *{PARQUET_SUFFIX} "
            f"(this one ends in {path.suffix or 'no suffix'!r}); export it as Parquet and deliver it again.",
        )
    if path.stat().st_size == 0:
        raise DeliveryRejected(file_name, "file_readable", "the file is empty (0 bytes); nothing can be read.")
    try:
        schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise _unreadable(file_name, error) from None

    contracts = load_contracts()
    personal = [repr(path) for path, name in _field_paths(schema) if contracts.is_personal_data(name)]
    try:
        keys = _map_keys(path, schema)
    except Exception as error:
        raise _unreadable(file_name, error) from None
    personal += [f"{column!r} key {key!r}" for column, key in keys if contracts.is_personal_data(key)]
    if personal:
        # Only column names (and map keys) are named: no other value of a refused file is read or stored.
        raise DeliveryRejected(
            file_name,
            "no_personal_data",
            f"column(s) {', '.join(personal)} look like personal data; "
            "deliveries must carry pseudonymised identifiers only. The file is refused and none of its values was stored.",
        )

    unnamed = [str(position) for position, name in enumerate(schema.names, start=1) if not name.strip()]
    if unnamed:
        raise DeliveryRejected(
            file_name, "column_names",
            f"column(s) at position(s) {', '.join(unnamed)} have no name; every column must be named.",
        )
    counts = Counter(_normalise(name) for name in schema.names)
    clashing = [name for name in schema.names if counts[_normalise(name)] > 1]
    if clashing:
        raise DeliveryRejected(
            file_name,
            "unique_column_names",
            f"column(s) {', '.join(repr(n) for n in clashing)} appear more than once or differ only in case or "
            "surrounding spaces, so it cannot be told which one holds the values; deliver the file with one "
            "column of each name.",
        )

    try:
        # The large family's strings are read dictionary-encoded: each distinct value held once.
        strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        table = pq.read_table(path, read_dictionary=strings if contract.cluster_by else None)
    except Exception as error:
        raise _unreadable(file_name, error) from None
    if table.num_rows == 0:
        raise DeliveryRejected(file_name, "has_rows", "the file has a valid header but zero rows.", rows=0)
    _refuse_text_not_utf8(table, file_name, contract)

    by_normalised = {_normalise(name): name for name in table.column_names}
    warnings: list[str] = []
    missing = [c for c in contract.required_columns if c not in by_normalised]
    declared = set(contract.column_names)
    extra = [name for key, name in by_normalised.items() if key not in declared]
    if missing:
        if any(_named_like_a_value(name) for name in extra):
            # its first row read as the header: the names are a subject's or a sample's values
            renamed = (f" Its other {len(extra)} column(s) are named like values (numbers, dates, identifiers), so "
                       "their names are not repeated here: was the file exported without its header row?")
        else:
            renamed = f" Unexpected column(s) present: {', '.join(repr(n) for n in extra)} (renamed?)." if extra else ""
        raise DeliveryRejected(
            file_name,
            "required_columns",
            f"required column(s) {', '.join(repr(c) for c in missing)} missing for family {contract.family}."
            f"{renamed}{_wrong_folder_hint(set(by_normalised), contract)}",
            rows=table.num_rows,
        )
    for key, name in by_normalised.items():
        if key in declared and key != name:
            warnings.append(f"column {name!r} read as {key!r}")
    if extra:
        warnings.append(
            f"column(s) {', '.join(repr(n) for n in extra)} are not in the contract; kept in raw.extra_columns, not used"
        )

    if not extra and all(
        _delivered_as_declared(table.schema.field(by_normalised[c.name]).type, c.type)
        for c in contract.columns if c.name in by_normalised
    ):
        cast_table = _as_declared(table, contract, by_normalised)
    else:
        cast_table = _cast_to_declared(table, file_name, contract, by_normalised, extra)
    _refuse_dates_out_of_range(cast_table, file_name, contract)
    # Row numbers are 1-based positions in the delivered file; arrow keeps file order.
    cast_table = cast_table.append_column("row_number", pa.array(np.arange(1, cast_table.num_rows + 1, dtype=np.int64)))
    return CheckedDelivery(family=contract.family, file_name=file_name, table=cast_table, warnings=warnings)


def _examples(column: str, contract: FamilyContract, found: list[tuple[int, str]]) -> str:
    """Rows of a file and their delivered values, for a refusal: rows only for a treatment-
    revealing column (the check may run for a blinded user), and for a family whose refusals
    quote no value (the subjects export: a birth date in the age column would be stored)."""
    if mentions_revealing(column, contract.family):
        return ", ".join(f"row {row}" for row, _ in found) + " (values not shown: treatment-revealing measure)"
    if not contract.refusals_quote_values:
        return ", ".join(f"row {row}" for row, _ in found) + " (values not shown: data about a person)"
    return ", ".join(f"row {row}: {value!r}" for row, value in found)


def _refuse_text_not_utf8(table: pa.Table, file_name: str, contract: FamilyContract) -> None:
    """Refuse a file whose text is not UTF-8 (a Windows export in Latin-1 or cp1252): which
    characters were meant cannot be told, and DuckDB and Great Expectations cannot read it."""
    for name in table.column_names:
        column = table[name]
        try:
            for chunk in column.chunks:
                chunk.validate(full=True)
        except pa.ArrowInvalid:
            found = []
            if _is_text(column.type):
                values = column.combine_chunks()
                if pa.types.is_dictionary(values.type):
                    values = values.dictionary_decode()
                for row, value in enumerate(values.view(pa.binary()).to_pylist(), start=1):
                    if value is not None and not _is_utf8(value):
                        found.append((row, value))
                        if len(found) == 3:
                            break
            where = f": {_examples(name, contract, found)}" if found else ""
            raise DeliveryRejected(
                file_name, "column_types",
                f"column {name!r} holds text that is not UTF-8{where}; export the file with UTF-8 text.",
                rows=table.num_rows,
            ) from None


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _refuse_dates_out_of_range(table: pa.Table, file_name: str, contract: FamilyContract) -> None:
    """Refuse a file with a date or time outside the years 1 to 9999, or infinite: a typo such as
    20210-06-01 that DuckDB reads as the year 20210, which no later step can read. (Dates within
    them but impossible for the trial are held back row by row by the expectations and staging.)"""
    dated = [c.name for c in contract.columns if c.type in ("DATE", "TIMESTAMP")]
    if not dated:
        return
    con = duckdb.connect()
    try:
        con.register("taken", table.select(dated))
        for name in dated:
            quoted = _identifier(name)
            found = con.execute(
                f"select __row, cast({quoted} as varchar) from (select {quoted}, row_number() over () as __row from taken) "
                f"where isinf({quoted}) or {quoted} < date '0001-01-01' or {quoted} >= date '10000-01-01' "
                "order by __row limit 3"
            ).fetchall()
            if found:
                raise DeliveryRejected(
                    file_name, "column_types",
                    f"column {name!r} holds dates outside the years 1 to 9999: {_examples(name, contract, found)} "
                    "(a year mistyped?).",
                    rows=table.num_rows,
                )
    finally:
        con.close()


# Arrow types that already are a declared DuckDB type: such columns need no cast and no check.
# (A string_view column is cast: arrow's kernels, and the steps that filter a delivery, take none.)
_SAME_TYPE = {
    "VARCHAR": (pa.string(), pa.large_string()),
    "DOUBLE": (pa.float64(),),
    "INTEGER": (pa.int32(),),
    "DATE": (pa.date32(),),
    "TIMESTAMP": (pa.timestamp("us"),),
}


def _value_type(delivered: pa.DataType) -> pa.DataType:
    """The type of a column's values (a dictionary-encoded column's: its dictionary's)."""
    return delivered.value_type if pa.types.is_dictionary(delivered) else delivered


def _is_text(delivered: pa.DataType) -> bool:
    """Whether a column holds text (any of Arrow's string types, dictionary-encoded or not)."""
    value = _value_type(delivered)
    return pa.types.is_string(value) or pa.types.is_large_string(value) or pa.types.is_string_view(value)


def _delivered_as_declared(delivered: pa.DataType, declared: str) -> bool:
    return _value_type(delivered) in _SAME_TYPE.get(declared, ())


def _as_declared(table: pa.Table, contract: FamilyContract, by_normalised: dict[str, str]) -> pa.Table:
    """The declared columns, renamed, when every delivered one already has its declared type."""
    arrays, names = [], []
    for column in contract.columns:
        source = by_normalised.get(column.name)
        arrays.append(table[source] if source is not None else pa.nulls(table.num_rows, _SAME_TYPE[column.type][0]))
        names.append(column.name)
    arrays.append(pa.nulls(table.num_rows, pa.string()))
    names.append("extra_columns")
    return pa.table(arrays, names=names)


def _cast_to_declared(
    table: pa.Table, file_name: str, contract: FamilyContract, by_normalised: dict[str, str], extra: list[str]
) -> pa.Table:
    """Cast delivered columns to their declared types, rejecting the file if a value cannot be
    read as its type; columns outside the contract are packed into ``extra_columns`` (JSON)."""
    for position, arrow_field in enumerate(table.schema):
        if pa.types.is_decimal256(arrow_field.type):
            # DuckDB reads no 256-bit decimal from Arrow: its exact text is read as the declared type
            table = table.set_column(position, arrow_field.name, pc.cast(table[arrow_field.name], pa.string()))
        elif _is_half_float(arrow_field.type):
            # nor a 16-bit float: its shortest decimal text is (0.1, not 0.0999755859375)
            table = table.set_column(position, arrow_field.name, _shortest_text(table[arrow_field.name]))
    con = duckdb.connect()
    try:
        return _cast_with(con, table, file_name, contract, by_normalised, extra)
    except duckdb.Error as error:
        if machine_fault(error):
            raise
        raise DeliveryRejected(
            file_name, "column_types", f"the warehouse cannot read the file's columns ({error}).", rows=table.num_rows
        ) from None
    finally:
        con.close()


def _cast_with(
    con: duckdb.DuckDBPyConnection, table: pa.Table, file_name: str, contract: FamilyContract,
    by_normalised: dict[str, str], extra: list[str],
) -> pa.Table:
    con.register("incoming", table)
    selects = []
    for column in contract.columns:
        source = by_normalised.get(column.name)
        if source is None:
            selects.append(f"cast(null as {column.type}) as {column.name}")
            continue
        quoted = _identifier(source)
        delivered_type = table.schema.field(source).type
        if _delivered_as_declared(delivered_type, column.type):
            selects.append(f"{quoted} as {column.name}")
            continue
        _refuse_meaningless_type(file_name, column.name, column.type, delivered_type, table.num_rows)
        if column.type == "DOUBLE" and _is_float32(delivered_type):
            # a 32-bit float holds the lab's decimal only nearly (668.1 is 668.0999755859375); its
            # shortest decimal form is the value delivered, and a later float64 copy equals it
            selects.append(f"cast(cast({quoted} as varchar) as double) as {column.name}")
            continue
        changed = _changed_by_cast(quoted, delivered_type, column.type)
        bad = con.execute(
            f"select __row, cast({quoted} as varchar) from (select {quoted}, row_number() over () as __row "
            f"from incoming) where {quoted} is not null and (try_cast({quoted} as {column.type}) is null"
            f"{f' or {changed}' if changed else ''}) order by __row limit 3"
        ).fetchall()
        if bad:
            raise DeliveryRejected(
                file_name,
                "column_types",
                f"column {column.name!r} is delivered as {delivered_type}, expected {column.type}; "
                f"values that cannot be read as {column.type} without changing them: "
                f"{_examples(column.name, contract, bad)}.",
                rows=table.num_rows,
            )
        selects.append(f"cast({quoted} as {column.type}) as {column.name}")
    if extra:
        packed = ", ".join(f"{_identifier(n)} := {_identifier(n)}" for n in extra)
        selects.append(f"cast(to_json(struct_pack({packed})) as json) as extra_columns")
    else:
        selects.append("cast(null as json) as extra_columns")
    return con.sql(f"select {', '.join(selects)} from incoming").to_arrow_table()


def _refuse_meaningless_type(file_name: str, column: str, declared: str, delivered: pa.DataType, rows: int) -> None:
    """Types whose values cannot become the declared type without a guess: a timestamp with a
    time zone (the contract's times are site-local, without one) and true/false for a number."""
    delivered = _value_type(delivered)
    if pa.types.is_timestamp(delivered) and delivered.tz is not None and declared in ("TIMESTAMP", "DATE"):
        reason = (f"column {column!r} is delivered as a timestamp with time zone {delivered.tz}; the contract "
                  f"expects {declared} in site-local time without a zone (converting would move every value).")
    elif pa.types.is_boolean(delivered) and declared in ("DOUBLE", "INTEGER"):
        reason = f"column {column!r} is delivered as true/false, expected a number ({declared})."
    elif pa.types.is_nested(delivered) or pa.types.is_union(delivered):
        # as text, a struct's fields would be stored unjudged (a %Treg inside a panel_version)
        reason = (f"column {column!r} is delivered as {delivered}, expected one {declared} value per row; "
                  "nested values (structs, lists, maps) are not read into a declared column.")
    else:
        return
    raise DeliveryRejected(file_name, "column_types", reason, rows=rows)


def _is_float32(delivered: pa.DataType) -> bool:
    return pa.types.is_float32(_value_type(delivered))


def _is_half_float(delivered: pa.DataType) -> bool:
    return pa.types.is_float16(_value_type(delivered))


def _shortest_text(column: pa.ChunkedArray) -> pa.Array:
    """A 16-bit float column as the shortest decimal text of each value (null stays null)."""
    values = column.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    numbers = values.to_numpy(zero_copy_only=False).astype(np.float16)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    return pa.array([np.format_float_positional(number, unique=True, trim="-") if ok else None
                     for number, ok in zip(numbers, valid, strict=True)], pa.string())


def _changed_by_cast(quoted: str, delivered: pa.DataType, declared: str) -> str | None:
    """SQL that is true where casting a value to ``declared`` would change it (a fraction
    rounded away, a time of day dropped), or would read text that is not written as the type
    is (DuckDB reads ``1_000`` as 1000, ``epoch`` as 1970-01-01, and a time with a zone as its
    clock time, where the contract's times are site-local); None where a cast keeps the value."""
    text = _is_text(delivered)
    delivered = _value_type(delivered)
    written_as = f"not regexp_full_match(trim({quoted}), '{_TEXT_FORMS[declared]}')" if text and declared in _TEXT_FORMS else None
    changed = None
    if declared == "INTEGER" and (pa.types.is_floating(delivered) or pa.types.is_decimal(delivered) or text):
        changed = f"try_cast({quoted} as double) is distinct from try_cast({quoted} as integer)"
    if declared == "DATE" and (pa.types.is_timestamp(delivered) or text):
        changed = f"try_cast({quoted} as timestamp) is distinct from cast(try_cast({quoted} as date) as timestamp)"
    return " or ".join(f"({c})" for c in (changed, written_as) if c) or None


# How a number or a date delivered as text must be written to be read (case-insensitive NaN and
# infinity are read, and held back by the expectations; ISO dates, with a time but no zone).
_NUMBER_TEXT = r"[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?|(?i)[-+]?(nan|inf|infinity)"
_DATE_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?"
_TEXT_FORMS = {"DOUBLE": _NUMBER_TEXT, "INTEGER": _NUMBER_TEXT, "DATE": _DATE_TEXT, "TIMESTAMP": _DATE_TEXT}


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _next_delivery_id(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("select coalesce(max(delivery_id), 0) + 1 from audit.delivery").fetchone()[0]


def _record_delivery(con: duckdb.DuckDBPyConnection, stat: FileStat | None, **values) -> None:
    columns = ", ".join(values)
    placeholders = ", ".join("?" for _ in values)
    con.execute(f"insert into audit.delivery ({columns}) values ({placeholders})", list(values.values()))
    _remember_file(con, values["file_name"], values["file_sha256"], stat)


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    path: Path,
    contract: FamilyContract,
    blinding: BlindingMode | None = None,
    docs_dir: Path | None = None,
    checking_outside_the_zone: bool = False,
    digest_key: bytes | None = None,
) -> DeliveryOutcome | None:
    """Load one file into the warehouse; ``None`` if this exact file was already processed.

    In a blinded build the values of treatment-revealing measures are checked, then withheld:
    they are never stored, nor shown in failure reasons or examples.
    ``checking_outside_the_zone``: ``landing`` is not the landing zone (``mirocals check`` on a
    file anywhere), so earlier deliveries' files cannot be looked for there. ``digest_key``: the
    warehouse's key for the digests it records (see :func:`recorded_digest`).

    Raises :class:`DeliveryNotTakenIn` when the file cannot be read (no permission, gone) or
    changes while it is read: nothing of it is recorded.
    """
    try:
        return _take_in(con, landing, path, contract, blinding, checking_outside_the_zone, digest_key, docs_dir)
    except OSError as error:
        raise DeliveryNotTakenIn(
            f"{path.relative_to(landing).as_posix()}: cannot be read ({error.strerror or error}); nothing of it "
            "was loaded. It is taken in by the first build that can read it."
        ) from None


def _take_in(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    path: Path,
    contract: FamilyContract,
    blinding: BlindingMode | None,
    checking_outside_the_zone: bool,
    digest_key: bytes | None,
    docs_dir: Path | None = None,
) -> DeliveryOutcome | None:

    def moved(earlier_file: str) -> bool:
        """Whether this file is ``earlier_file`` itself, moved: the same inode on the same device,
        with the modification time recorded when that file was taken in (a move keeps it; a file
        written again under a new name that got a freed inode back does not). Without a record:
        that path is gone."""
        if checking_outside_the_zone:
            return False
        record = con.execute(
            "select inode, device, mtime_ns from audit.landing_file where file_name = ?", [earlier_file]
        ).fetchone()
        if record is not None:
            return tuple(record) == (before.inode, before.device, before.mtime_ns)
        return not (landing / earlier_file).exists()

    file_name = path.relative_to(landing).as_posix()
    before = FileStat.of(path)
    if taken_in_unchanged(con, {file_name: before}):
        return None
    hashed_at = time.time_ns()
    sha = recorded_digest(file_sha256(path), digest_key)
    stat = _settled_stat(path, before, hashed_at)
    # Already taken in: the bytes of this file's newest delivery, or of its newest loaded one (the
    # file put back as it was loaded, after a replacement that was refused). A file changed back
    # to bytes it had before that is a new delivery: the change is undone, see below.
    if sha in current_bytes(con, file_name):
        _remember_file(con, file_name, sha, stat)
        return None
    delivery_id = _next_delivery_id(con)
    now = utc_now()
    base = dict(
        delivery_id=delivery_id, family=contract.family, file_name=file_name, file_sha256=sha,
        file_bytes=before.file_bytes, received_at=now,
    )
    same_bytes = con.execute(
        "select delivery_id, file_name from audit.delivery where file_sha256 = ? and status = 'accepted' "
        "order by delivery_id desc limit 1", [sha]
    ).fetchone()
    resent = None
    if same_bytes and same_bytes[1] == file_name:
        # this file was changed, and is now back to bytes it had before: the change is undone
        resent = (f"same bytes as delivery {same_bytes[0]}, an earlier version of this file; "
                  "taken in again as the newest")
        same_bytes = None
    elif same_bytes and contract.mode == "snapshot" and not moved(same_bytes[1]):
        newest = con.execute("select audit.newest_delivery(?)", [contract.family]).fetchone()[0]
        if same_bytes[0] != newest:
            # an earlier full export sent again (a correction undone): it is the newest export now.
            # (The earlier file itself, moved elsewhere in the landing zone, is a duplicate.)
            resent = (f"same bytes as delivery {same_bytes[0]} ({same_bytes[1]}), an earlier export; "
                      "taken in again as the newest export")
            same_bytes = None
    if same_bytes:
        rows = pq.read_metadata(path).num_rows
        reason = (
            f"{file_name}: identical bytes (digest {sha[:12]}...) to delivery {same_bytes[0]} "
            f"({same_bytes[1]}), already loaded; nothing new was loaded."
            + (" It is that file, moved or renamed." if moved(same_bytes[1]) else "")
        )
        _record_delivery(con, stat, **base, rows_delivered=rows, status="duplicate", rule="duplicate_delivery",
                         reason=reason, duplicate_of=same_bytes[0])
        return DeliveryOutcome(delivery_id, contract.family, file_name, "duplicate", rows, 0, reason, None)

    try:
        checked, rejection = check_delivery(path, file_name, contract), None
    except DeliveryRejected as refused:
        checked, rejection = None, refused
    if FileStat.of(path) != before:
        # the verdict would be on other bytes than the digest it is recorded under
        raise DeliveryChanged(
            f"{file_name} changed while it was being taken in (its bytes no longer match digest "
            f"{sha[:12]}...); nothing of it was loaded. Build again once the transfer is complete."
        )
    if rejection is not None:
        rows = rejection.rows
        if rows is None:
            try:
                rows = pq.read_metadata(path).num_rows
            except Exception:
                rows = None
        reason = str(rejection)
        _record_delivery(con, stat, **base, rows_delivered=rows, status="rejected", rule=rejection.rule, reason=reason)
        return DeliveryOutcome(delivery_id, contract.family, file_name, "rejected", rows, 0, reason, None)

    if resent:
        checked.warnings.append(resent)
    try:
        return _accept(con, checked, contract, blinding, base, stat, checking_outside_the_zone, docs_dir)
    except CONTENT_ERRORS as error:
        # a fault of the file that no check above names: it is refused, recorded, and the build
        # goes on with the other files (an error of the machine, such as a full disk, stops it)
        if machine_fault(error):
            raise
        reason = f"{file_name}: {_not_processable(error, contract, blinding)}"
        _record_delivery(con, stat, **base, rows_delivered=checked.table.num_rows, status="rejected",
                         rule="file_processable", reason=reason)
        return DeliveryOutcome(delivery_id, contract.family, file_name, "rejected", checked.table.num_rows, 0,
                               reason, None)


# Errors that reading a file's content can raise: a file raising one is refused (file_processable),
# unless it is a fault of the machine (:func:`machine_fault`).
CONTENT_ERRORS = (ValueError, pa.ArrowException, duckdb.ConversionException, duckdb.InvalidInputException,
                  duckdb.OutOfRangeException)


def _unreadable(file_name: str, error: Exception) -> DeliveryRejected:
    """The refusal of a file pyarrow cannot read; an error of the machine is raised again instead."""
    if machine_fault(error):
        raise error
    return DeliveryRejected(
        file_name, "file_readable", f"not a readable Parquet file (truncated or damaged in transfer?): {error}")


def machine_fault(error: BaseException) -> bool:
    """Whether an error met while reading or taking in a file is the machine's, not the file's:
    memory ran out (pyarrow's ArrowMemoryError is also an ArrowException), the work was cancelled
    or interrupted, or the operating system failed a read (an OSError with an errno; the OSErrors
    pyarrow raises for corrupt pages carry none). Such a file is not refused: it is taken in by a
    later build."""
    return (isinstance(error, (MemoryError, pa.ArrowCancelled)) or (isinstance(error, OSError) and error.errno is not None)
            or (isinstance(error, duckdb.Error) and INTERRUPTED_IN_DUCKDB.search(str(error)) is not None))


# A run stopped (SIGTERM, SIGINT: Dagster raises DagsterExecutionInterruptedError, Python
# KeyboardInterrupt) while DuckDB was reading a Python object registered with it: DuckDB reports
# the interruption as its own InvalidInputException naming the Python exception (with its module,
# at the start of a line of the traceback it quotes), which refused the file being taken in, for
# good, and the run went on.
INTERRUPTED_IN_DUCKDB = re.compile(r"(?:failed: |^)(?:[\w.]+\.)?(?:DagsterExecutionInterruptedError|KeyboardInterrupt)\b", re.M)


def _not_processable(error: Exception, contract: FamilyContract, blinding: BlindingMode | None) -> str:
    """The reason a file is refused for an error no check names: the error, less its message in
    a blinded build of a family with treatment-revealing values (it may quote one)."""
    detail = type(error).__name__
    blinded = blinding is not None and blinding.blinded
    if not (blinded and any(mentions_revealing(column, contract.family) for column in contract.column_names)):
        detail += ": " + (str(error).splitlines() or [""])[0][:300]
    return (f"the file could not be taken in ({detail}); nothing of it was stored. No check names this fault "
            "yet: tell the warehouse's maintainers, and deliver the file again once it is corrected.")


def _accept(
    con: duckdb.DuckDBPyConnection,
    checked: CheckedDelivery,
    contract: FamilyContract,
    blinding: BlindingMode | None,
    base: dict,
    stat: FileStat | None,
    checking_outside_the_zone: bool,
    docs_dir: Path | None = None,
) -> DeliveryOutcome:
    """Load a delivery that passed its contract, with its validation, in one transaction; with
    ``docs_dir``, its Great Expectations results are stored for the Data Docs site before the
    commit (:func:`pipelines.ingest.expectations.store_validation_results`)."""
    delivery_id, file_name, now = base["delivery_id"], base["file_name"], base["received_at"]
    delivered = checked.table
    stored = _as_kept(delivered, contract, blinding)
    if stored is not delivered and stored["extra_columns"].null_count < stored.num_rows:
        checked.warnings.append("values of columns outside the contract are withheld (blinded build)")
    # Raw rows, validation results and the audit record land together or not at all. The raw
    # rows are written while Great Expectations validates (DuckDB releases the GIL, GX works on
    # pandas in this thread): the two take about as long, and a large delivery then costs one.
    parameters = suite_parameters(blinding)
    pending = None
    with _pending_pages_discarded_unless_committed(con, docs_dir, lambda: pending, delivery_id, now), atomic(con):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-load") as loader:
            loading = loader.submit(_load_checked, con, stored, contract, base)
            try:
                validation = validate_table(contract.suite, delivered, list(contract.column_names), parameters)
                repeated = repeated_key_rows(delivered, contract.key) if contract.index_repeated_keys else None
            finally:
                loading.result()
        validation = _as_stored(validation, delivered, stored, contract)
        _store_validation(con, delivery_id, validation, now, _rules(contract, parameters, blinding))
        if repeated is not None:
            _store_repeated_keys(con, delivery_id, repeated)
        for remark in (
            _keys_not_delivered_again(con, contract, file_name, delivery_id),
            # a file checked outside the landing zone has no landing-zone name to sort by
            None if checking_outside_the_zone else _taken_in_under_a_later_name(con, contract, file_name, delivery_id),
        ):
            if remark:
                checked.warnings.append(remark)
        warnings = "; ".join(checked.warnings) or None
        _record_delivery(con, stat, **base, rows_delivered=stored.num_rows, status="accepted", warnings=warnings)
        try:
            pending = _store_for_data_docs(docs_dir, validation, delivery_id, now)
        except OSError as error:
            raise DeliveryNotTakenIn(
                f"{file_name}: its validation results could not be stored for the Data Docs site in {docs_dir} "
                f"({error.strerror or error}); nothing of it was loaded. It is taken in by the first build that can."
            ) from None
    return DeliveryOutcome(delivery_id, contract.family, file_name, "accepted", stored.num_rows, validation.rows_failing,
                           None, validation, warnings=warnings, pending_pages=pending)


def _store_for_data_docs(
    docs_dir: Path | None, validation: SuiteResult, delivery_id: int, judged_at: datetime
) -> PendingPages | None:
    """A judgment's results stored for the Data Docs site (in its transaction, last before the
    commit), or None without a site or results. A site that cannot store them (OSError) fails
    the transaction: a judgment is never committed without its results."""
    if docs_dir is None or not validation.gx_results:
        return None
    return store_validation_results(validation, docs_dir, data_docs_label(delivery_id), delivery_id, judged_at)


@contextmanager
def _pending_pages_discarded_unless_committed(
    con: duckdb.DuckDBPyConnection, docs_dir: Path | None, pending: Callable[[], PendingPages | None],
    delivery_id: int, judged_at: datetime,
) -> Iterator[None]:
    """Around a transaction storing a judgment: when it fails, the results it stored for the
    Data Docs site (``pending()``) are removed, unless the judgment was committed all the same
    (a stop raised as the commit returned). When the warehouse cannot tell, they are left to
    the next build (:func:`pipelines.ingest.expectations.settle_pending_pages`)."""
    try:
        yield
    except BaseException:
        stored = pending()
        if docs_dir is not None and stored is not None:
            try:
                committed = judgment_committed(con, delivery_id, judged_at)
            except duckdb.Error:
                committed = True
            if not committed:
                discard_pending_pages(docs_dir, stored)
        raise


def judgment_committed(con: duckdb.DuckDBPyConnection, delivery_id: int, judged_at: datetime) -> bool:
    """Whether the warehouse holds the judgment of ``delivery_id`` made at ``judged_at``."""
    return con.execute("select count(*) > 0 from audit.validation where delivery_id = ? and validated_at = ?",
                       [delivery_id, judged_at]).fetchall()[0][0]


def _as_kept(delivered: pa.Table, contract: FamilyContract, blinding: BlindingMode | None) -> pa.Table:
    """A delivery's rows as the warehouse keeps them: without the values a blinded build withholds."""
    return withhold_revealing_values(delivered, contract.family) if blinding is not None and blinding.blinded else delivered


def _as_stored(validation: SuiteResult, delivered: pa.Table, stored: pa.Table, contract: FamilyContract) -> SuiteResult:
    """A judgment as the warehouse keeps it: where a blinded build withholds values (``stored``
    is not ``delivered``), without them, and without conflicts only they would show."""
    if stored is delivered:
        return validation
    validation = withhold_revealing_failures(validation, contract.family)
    return _with_conflicts_hidden_by_blinding(validation, delivered, stored, contract)


# Marks the rules version of a judgment made from the warehouse's copy of a blinded delivery,
# whose withheld values kept the verdicts of the rules before: judged again once the file is back.
WITHHELD_NOT_JUDGED = "+withheld-values-not-judged"


@dataclass(frozen=True)
class Rejudged:
    """An accepted delivery judged again because the rules changed since it was judged: from
    its file (``from_file``) or, when the landing zone no longer holds the bytes taken in, from
    the warehouse's copy of its rows. ``withheld_kept``: it was a blinded build's copy, whose
    withheld (treatment-revealing) values could not be judged again and keep earlier verdicts.
    ``validation`` is None for a delivery judged so at an earlier build, still waiting for its file."""

    delivery_id: int
    file_name: str
    rows_failing_before: int
    rows_failing: int
    from_file: bool
    withheld_kept: bool
    validation: SuiteResult | None
    pending_pages: PendingPages | None = None  # see DeliveryOutcome


def data_docs_label(delivery_id: int) -> str:
    """The batch name of a delivery's pages in the Data Docs site."""
    return f"delivery-{delivery_id:05d}"


def judge_again(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    contract: FamilyContract,
    blinding: BlindingMode | None = None,
    digest_key: bytes | None = None,
    docs_dir: Path | None = None,
) -> tuple[list[Rejudged], list[Rejudged]]:
    """Judge again, by the current rules, every accepted delivery of the family that was judged
    by other rules (a suite or a study value it names changed since, see ``rules_version``).

    The rows are read again from the file, as when it was taken in, if the landing zone still
    holds the bytes taken in under that name; else from ``raw.<family>__rows``, which keeps every
    delivered row as delivered, but without the values a blinded build withholds: those keep
    their earlier verdicts. The new judgment is stored beside the earlier ones: staging reads the
    newest, and an incremental model that took the delivery in is rebuilt (``run_incremental_model``).

    In a blinded build, the values the current rules withhold and earlier ones did not are
    first withheld from the warehouse's copy, its earlier judgments and their pages in the Data
    Docs site ``docs_dir``.

    Returns the deliveries judged again, and those judged from the warehouse at an earlier build
    whose withheld values still wait for their file.
    """
    parameters = suite_parameters(blinding)
    rules = _rules(contract, parameters, blinding)
    partial = rules + WITHHELD_NOT_JUDGED
    stale = con.execute(query_sql("judged_by_other_rules"), [contract.family, rules]).fetchall()
    if blinding is not None and blinding.blinded:
        # withheld first, every earlier export included: what a blinded build withholds may
        # have grown since these deliveries were stored (a gene or column marked revealing)
        for delivery_id, *_ in stale:
            with atomic(con):
                withheld = withhold_stored_values(con, contract.family, delivery_id)
                if withheld:
                    con.execute("insert into audit.withholding values (?, ?, ?, ?, null)",
                                [delivery_id, contract.family, withheld, utc_now()])
        if docs_dir is not None and stale:
            redact_data_docs(docs_dir, contract.suite, [data_docs_label(delivery_id) for delivery_id, *_ in stale],
                             lambda column: mentions_revealing(column, contract.family), WITHHELD)
    if contract.mode == "snapshot":
        # only the newest export counts; the earlier ones' rows are no longer current
        newest = con.execute("select audit.newest_delivery(?)", [contract.family]).fetchone()[0]
        stale = [row for row in stale if row[0] == newest]
    judged, standing = [], []
    for delivery_id, file_name, digest, failing_before, judged_at, judged_by in stale:
        delivered = _delivered_again(con, landing, delivery_id, file_name, digest, contract, digest_key)
        if delivered is None and judged_by == partial:
            # judged from the warehouse by these rules already; its withheld values wait for the file
            standing.append(Rejudged(delivery_id, file_name, failing_before, failing_before, False, True, None))
            continue
        withheld_kept = False
        if delivered is not None:
            stored = _as_kept(delivered, contract, blinding)
            validation = validate_table(contract.suite, delivered, list(contract.column_names), parameters)
            validation = _as_stored(validation, delivered, stored, contract)
        else:
            stored = _stored_rows(con, contract, delivery_id)
            validation = validate_table(contract.suite, stored, list(contract.column_names), parameters)
            if blinding is not None and blinding.blinded:
                validation, withheld_kept = _keep_withheld_verdicts(con, validation, stored, contract, delivery_id, judged_at)
        # after the judgment it replaces, whatever the clock says: the newest judgment counts
        at = max(utc_now(), judged_at + timedelta(microseconds=1))
        pending = None
        with _pending_pages_discarded_unless_committed(con, docs_dir, lambda: pending, delivery_id, at), atomic(con):
            _store_validation(con, delivery_id, validation, at, partial if withheld_kept else rules)
            pending = _store_for_data_docs(docs_dir, validation, delivery_id, at)
        judged.append(Rejudged(delivery_id, file_name, failing_before, validation.rows_failing, delivered is not None,
                               withheld_kept, validation, pending))
    return judged, standing


def _rules(contract: FamilyContract, parameters: dict, blinding: BlindingMode | None) -> str:
    """The version of the rules a delivery of ``contract``'s family is judged and kept by."""
    return rules_version(contract.suite, parameters, blinding.withholding(contract.family) if blinding is not None else None)


def _delivered_again(
    con: duckdb.DuckDBPyConnection, landing: Path, delivery_id: int, file_name: str, digest: str,
    contract: FamilyContract, digest_key: bytes | None,
) -> pa.Table | None:
    """The delivery read again from its file, as when it was taken in: under its name, or where
    it was seen since (moved or renamed: a duplicate of it, or a landing file with its digest).
    None unless the landing zone holds, readable and unchanged while read, the bytes taken in,
    and the contract takes them."""
    seen_since = con.execute(
        "select file_name from audit.delivery where duplicate_of = ? "
        "union select file_name from audit.landing_file where file_sha256 = ?",
        [delivery_id, digest],
    ).fetchall()
    for name in dict.fromkeys([file_name, *sorted(name for name, in seen_since)]):
        path = landing / name
        try:
            before = FileStat.of(path)
            if recorded_digest(file_sha256(path), digest_key) != digest:
                continue
            table = check_delivery(path, name, contract).table
        except (OSError, DeliveryRejected):
            continue
        if FileStat.of(path) == before:
            return table
    return None


def _stored_rows(con: duckdb.DuckDBPyConnection, contract: FamilyContract, delivery_id: int) -> pa.Table:
    """A delivery's rows as the warehouse keeps them, with their row numbers in the file."""
    columns = ", ".join(_identifier(c) for c in ("row_number", *contract.column_names))
    return con.sql(
        f"select {columns} from raw.{contract.family}__rows where delivery_id = $1 order by row_number", params=[delivery_id]
    ).to_arrow_table()


def _keep_withheld_verdicts(
    con: duckdb.DuckDBPyConnection, validation: SuiteResult, stored: pa.Table, contract: FamilyContract,
    delivery_id: int, judged_at: datetime,
) -> tuple[SuiteResult, bool]:
    """A judgment made on the warehouse's copy of a delivery in a blinded build, whose withheld
    values cannot be judged again: on them, the verdicts of the judgment before stand (as do the
    conflicts only the withheld values showed), and the rules on their columns count those.
    Returns it, and whether the delivery had withheld values; without Great Expectations' own
    results, which judged the withheld values as missing (no Data Docs page is made from them)."""
    rows = stored["row_number"].to_numpy()
    withheld = {
        column: set(rows.tolist()) if mask is True else set(rows[mask.combine_chunks().to_numpy(zero_copy_only=False)].tolist())
        for column, mask in withheld_values(stored, contract.family).items()
    }
    if not any(withheld.values()):
        return validation, False

    def on_withheld(row: int, column: str | None) -> bool:
        return column is not None and any(row in withheld.get(c, ()) for c in column.split(","))

    earlier = [
        RowFailure(int(row), rule, column, reason)
        for row, rule, column, reason in con.execute(
            "select row_number, rule, column_name, reason from audit.row_failure where delivery_id = ? and validated_at = ?",
            [delivery_id, judged_at],
        ).fetchall()
    ]
    kept = [f for f in earlier if on_withheld(f.row_number, f.column) or (f.rule == "conflicting_values" and f.column is None)]
    failures = [f for f in validation.row_failures if not on_withheld(f.row_number, f.column)] + kept
    counts = Counter(f.rule for f in failures)
    outcomes = [
        replace(o, unexpected_count=counts[o.rule], success=not counts[o.rule],
                examples=[WITHHELD] * min(counts[o.rule], EXAMPLES_PER_EXPECTATION))
        if o.column and any(c in withheld for c in o.column.split(",")) else o
        for o in validation.outcomes
    ]
    merged = replace(validation, row_failures=failures, outcomes=outcomes, success=all(o.success for o in outcomes),
                     gx_results=[])
    return withhold_revealing_failures(merged, contract.family), True


def _keys_not_delivered_again(
    con: duckdb.DuckDBPyConnection, contract: FamilyContract, file_name: str, delivery_id: int
) -> str | None:
    """A remark when a new version of an append file lacks keys its earlier version carried:
    their earlier values stay current, which a lab sending the file again may not expect."""
    if contract.mode != "append":
        return None
    earlier = con.execute(
        "select max(delivery_id) from audit.delivery where file_name = ? and status = 'accepted' and delivery_id < ?",
        [file_name, delivery_id],
    ).fetchone()[0]
    if earlier is None:
        return None
    rows = f"raw.{contract.family}__rows"
    # compared trimmed and in upper case: spaces around and case are not a different key
    normalised = ", ".join(f"upper(trim({column}::varchar)) as k{i}" for i, column in enumerate(contract.key))
    aliases = ", ".join(f"k{i}" for i in range(len(contract.key)))
    missing, example = con.execute(
        f"select count(*), min(concat_ws(' ', {aliases})) from (select {normalised} from {rows} where delivery_id = ? "
        f"except select {normalised} from {rows} where delivery_id = ?)",
        [earlier, delivery_id],
    ).fetchone()
    if not missing:
        return None
    return (f"{missing} key(s) ({', '.join(contract.key)}) of its earlier version (delivery {earlier}) are not in it, "
            f"such as {example}: their rows from delivery {earlier} are not replaced, and where valid their values "
            "stay current (a file sent again adds and corrects rows, it removes none)")


def _taken_in_under_a_later_name(
    con: duckdb.DuckDBPyConnection, contract: FamilyContract, file_name: str, delivery_id: int
) -> str | None:
    """A remark when ``file_name`` sorts before a file of its family taken in earlier that shares
    keys with it (its first key column: samples, subjects): a warehouse rebuilt from the landing
    zone takes files in by name, and the earlier file's values would win there."""
    accepted = con.execute(
        "select delivery_id, file_name from audit.delivery where family = ? and status = 'accepted' and delivery_id < ?",
        [contract.family, delivery_id],
    ).fetchall()
    here = delivery_order(file_name)
    later = {d: name for d, name in accepted if delivery_order(name) > here}
    if not later:
        return None
    key, rows = contract.key[0], f"raw.{contract.family}__rows"
    shared = [d for (d,) in con.execute(
        f"select distinct delivery_id from {rows} where delivery_id in (select unnest(?::integer[])) "
        f"and upper(trim({key})) in (select upper(trim({key})) from {rows} where delivery_id = ?)",
        [list(later), delivery_id],
    ).fetchall()]
    if not shared:
        return None
    name = max((later[d] for d in shared), key=delivery_order)
    return (f"its name sorts before {name}, taken in earlier, which carries some of the same {key}s: a warehouse "
            f"rebuilt from the landing zone would take this file in first, and {name}'s values would win there; "
            f"rename it to sort after {name}")


def _with_conflicts_hidden_by_blinding(
    result: SuiteResult, delivered: pa.Table, withheld: pa.Table, contract: FamilyContract
) -> SuiteResult:
    """Add ``conflicting_values`` failures for keys whose rows differ only in withheld values.

    Staging compares the stored values; once treatment-revealing values are withheld, two
    different results for one key look alike (or like exact copies) and one of them would load.
    """
    if contract.kind != "lab" or "sample_id" not in contract.key:
        return result
    other_keys = [k for k in contract.key if k != "sample_id"]
    values = [c for c in contract.column_names if c not in contract.key]
    partition = ", ".join(["upper(trim(d.sample_id))", *(f"d.{k}" for k in other_keys)])
    key_of = ", ".join(["upper(trim(sample_id))", *other_keys])
    # Only keys with a row whose value was withheld can hide a conflict (for the gene table: the
    # treatment-revealing genes), and only if they were delivered more than once.
    withheld_any = None
    for column in values:
        lost = pc.and_(pc.is_valid(delivered[column]), pc.is_null(withheld[column]))
        withheld_any = lost if withheld_any is None else pc.or_(withheld_any, lost)
    if withheld_any is None or not pc.any(withheld_any).as_py():
        return result
    touched = delivered.filter(withheld_any).select(contract.key)
    if other_keys:
        # only rows that share the rest of the key with a touched row can share its key (for
        # the gene table: the rows of the withheld genes, a few thousand of millions)
        candidate = None
        for key in other_keys:
            hit = in_set(delivered[key], pc.unique(touched[key].combine_chunks()))
            candidate = hit if candidate is None else pc.and_(candidate, hit)
        delivered, withheld = delivered.filter(candidate), withheld.filter(candidate)
    con = duckdb.connect()
    try:
        con.register("delivered_all", delivered)
        con.register("withheld_all", withheld)
        con.register("touched", touched)
        con.execute(
            f"create temp table repeated as select row_number from delivered_all "
            f"where ({key_of}) in (select ({key_of}) from touched) "
            f"qualify count(*) over (partition by {key_of}) > 1"
        )
        con.execute("create temp view delivered as select * from delivered_all semi join repeated using (row_number)")
        con.execute("create temp view withheld as select * from withheld_all semi join repeated using (row_number)")
        rows = con.execute(
            f"""
            select row_number, sample_id, {', '.join(['versions', *other_keys])} from (
                select
                    d.row_number, upper(trim(d.sample_id)) as sample_id, {', '.join(f'd.{k}' for k in other_keys) or 'null as _'},
                    count(distinct row({', '.join(f'd.{c}' for c in values)})) over (partition by {partition}) as versions,
                    count(distinct row({', '.join(f'w.{c}' for c in values)})) over (partition by {partition}) as stored
                from delivered as d join withheld as w using (row_number)
            )
            where versions > 1 and stored = 1
            order by row_number
            """
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return result
    failures = [
        RowFailure(
            row_number=int(row_number),
            rule="conflicting_values",
            column=None,
            reason=f"sample {sample_id} has {versions} different results"
            + (f" for {' '.join(str(v) for v in rest)}" if rest else "")
            + " in this delivery",
        )
        for row_number, sample_id, versions, *rest in rows
    ]
    return replace(result, row_failures=[*result.row_failures, *failures])


def repeated_key_rows(table: pa.Table, key: tuple[str, ...]) -> np.ndarray:
    """Row numbers of the rows whose ``key`` occurs more than once in ``table``, comparing
    values ignoring case and surrounding whitespace (so never fewer rows than staging's
    comparison finds). Works on each key column's distinct values and integer codes."""
    combined = np.zeros(table.num_rows, dtype=np.int64)
    size = 1
    for column in key:
        dictionary, codes = distinct_codes(table[column])
        if pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type):
            # compare the distinct values loosely, then give equal ones one code
            _, loose = distinct_codes(pc.utf8_lower(pc.utf8_trim_whitespace(dictionary)))
            codes = loose[codes]
        distinct = int(codes.max()) + 1 if len(codes) else 1
        if size * distinct >= 2**62:  # renumber the combined codes before they could overflow
            combined = np.unique(combined, return_inverse=True)[1].astype(np.int64)
            size = int(combined.max()) + 1
        combined = combined * distinct + codes
        size *= distinct
    if size <= 50_000_000:
        counts = np.bincount(combined, minlength=size)
        repeated = counts[combined] > 1
    else:
        _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
        repeated = counts[inverse] > 1
    return table["row_number"].to_numpy()[repeated]


def cluster_order(table: pa.Table, column: str) -> np.ndarray:
    """Row positions that sort ``table`` by ``column`` (stable, nulls last): sorting the
    distinct values and then their codes is much cheaper than sorting the strings themselves."""
    dictionary, codes = distinct_codes(table[column])
    rank = pc.rank(dictionary, sort_keys="ascending").to_numpy()  # nulls rank last
    keys = rank[codes]
    if len(rank) <= np.iinfo(np.int16).max:
        keys = keys.astype(np.int16)  # numpy sorts 16-bit keys stably by radix, in linear time
    return np.argsort(keys, kind="stable")


def _load_checked(con: duckdb.DuckDBPyConnection, table: pa.Table, contract: FamilyContract, base: dict) -> None:
    columns = ", ".join(contract.column_names)
    # file name, SHA-256 and load time are the delivery's, in audit.delivery (see create_raw_tables)
    insert = f"insert into raw.{contract.family}__rows select {columns}, ? as delivery_id, row_number, extra_columns from checked"
    provenance = [base["delivery_id"]]
    if contract.cluster_by:
        # Sorted part by part, so that only one part is ever copied in memory.
        order = cluster_order(table, contract.cluster_by)
        parts = [order[i:i + ROWS_PER_INSERT] for i in range(0, len(order), ROWS_PER_INSERT)]
    else:
        parts = [None]
    for part in parts:
        con.register("checked", table if part is None else table.take(pa.array(part)))
        con.execute(insert, provenance)
        con.unregister("checked")


def _store_repeated_keys(con: duckdb.DuckDBPyConnection, delivery_id: int, row_numbers: np.ndarray) -> None:
    rows = pa.table({
        "delivery_id": pa.array(np.full(len(row_numbers), delivery_id, dtype=np.int32)),
        "row_number": pa.array(row_numbers.astype(np.int64)),
    })
    con.register("repeated", rows)
    con.execute("insert into audit.repeated_key_row select * from repeated")
    con.unregister("repeated")


def _store_validation(
    con: duckdb.DuckDBPyConnection, delivery_id: int, result: SuiteResult, at: datetime, rules: str
) -> None:
    """One judgment of a delivery: its row failures and its outcomes, made at ``at`` by the
    rules of version ``rules``."""
    if result.row_failures:
        failures = pa.table(
            {
                "delivery_id": pa.array([delivery_id] * len(result.row_failures), pa.int32()),
                "row_number": pa.array([f.row_number for f in result.row_failures], pa.int64()),
                "rule": [f.rule for f in result.row_failures],
                "column_name": [f.column for f in result.row_failures],
                "reason": [f.reason for f in result.row_failures],
                "validated_at": pa.array([at] * len(result.row_failures), pa.timestamp("us")),
            }
        )
        con.register("failures", failures)
        con.execute("insert into audit.row_failure by name select * from failures")
        con.unregister("failures")
    con.executemany(
        "insert into audit.validation (delivery_id, suite, rule, expectation_type, column_name, success, "
        "element_count, unexpected_count, examples, validated_at, rules_sha256) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [delivery_id, result.suite, o.rule, o.expectation_type, o.column, o.success, o.element_count,
             o.unexpected_count, json.dumps(o.examples, default=str), at, rules]
            for o in result.outcomes
        ],
    )
