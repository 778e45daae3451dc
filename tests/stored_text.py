"""Everything a warehouse file stores, as text, to search for values that must not be there
(personal data of a refused file, treatment-revealing values of a blinded build)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def warehouse_text(path: Path) -> dict[str, str]:
    """Every column of every table and view in the DuckDB file (all types cast to text), and the
    column comments: ``schema.table.column`` -> the column's values joined."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_catalog = current_database() order by all"
        ).fetchall()
        by_table: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in columns:
            by_table.setdefault((schema, table), []).append(column)
        text: dict[str, str] = {}
        for (schema, table), names in by_table.items():
            quoted = ['"' + n.replace('"', '""') + '"' for n in names]
            values = con.execute(
                f"select {', '.join(f'string_agg(cast({q} as varchar), chr(31))' for q in quoted)} "
                f'from "{schema}"."{table}"'
            ).fetchone()
            text.update({f"{schema}.{table}.{n}": v or "" for n, v in zip(names, values)})
        text["(column comments)"] = "\x1f".join(
            c for (c,) in con.execute("select comment from duckdb_columns() where comment is not null").fetchall())
        return text
    finally:
        con.close()


def columns_containing(text: dict[str, str], value: str) -> list[str]:
    return [column for column, values in text.items() if value in values]
