"""Contract-driven Parquet writing: declared columns, declared order, declared types, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.study import FamilyContract
from pipelines.synth.report import GeneratedFile

#: DuckDB logical type (as declared in schemas/deliveries.yaml) -> Arrow type written.
ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}

#: Deterministic output: no Arrow schema blob (dictionary columns read back as plain strings),
#: zstd, statistics on. Parquet metadata then holds only the writer's fixed version string.
PARQUET_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": True,
    "write_statistics": True,
    "store_schema": False,
}


def arrow_type(duckdb_type: str) -> pa.DataType:
    """Arrow type for a declared DuckDB type."""
    try:
        return ARROW_TYPES[duckdb_type.upper()]
    except KeyError as exc:
        raise ValueError(f"no Arrow type for declared type {duckdb_type!r}") from exc


def arrow_schema(contract: FamilyContract, dictionary_strings: bool = False) -> pa.Schema:
    """Arrow schema of a family's contract (strings optionally dictionary-encoded in memory)."""
    fields = []
    for c in contract.columns:
        t = arrow_type(c.type)
        if dictionary_strings and t == pa.string():
            t = pa.dictionary(pa.int32(), pa.string())
        fields.append(pa.field(c.name, t, nullable=True))
    return pa.schema(fields)


def check_columns(contract: FamilyContract, names: Sequence[str]) -> None:
    """Raise unless ``names`` are exactly the contract's columns in declared order."""
    if list(names) != list(contract.column_names):
        raise ValueError(
            f"{contract.family}: columns {list(names)} do not match the contract {list(contract.column_names)}"
        )


def relpath(contract: FamilyContract, name: str) -> str:
    """Landing-zone relative path (posix) of a delivery file of this family."""
    return f"{contract.folder.strip('/')}/{name}"


def write_columns(out: Path, contract: FamilyContract, name: str, columns: dict[str, Sequence]) -> GeneratedFile:
    """Write one delivery from column lists; the columns must be exactly the contract's."""
    if set(columns) != set(contract.column_names):
        check_columns(contract, list(columns))
    schema = arrow_schema(contract)
    table = pa.Table.from_arrays(
        [pa.array(columns[f.name], type=f.type) for f in schema], schema=schema
    )
    rel = relpath(contract, name)
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=max(1, table.num_rows), **PARQUET_OPTIONS)
    return GeneratedFile(contract.family, rel, table.num_rows)


def write_rows(out: Path, contract: FamilyContract, name: str, rows: list[dict]) -> GeneratedFile:
    """Write one delivery from row dicts; keys starting with ``_`` are private and dropped."""
    for row in rows:
        public = [k for k in row if not k.startswith("_")]
        if set(public) != set(contract.column_names):
            check_columns(contract, public)
    columns = {c: [row[c] for row in rows] for c in contract.column_names}
    return write_columns(out, contract, name, columns)
