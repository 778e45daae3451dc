"""Everything a warehouse file stores, as text, to search for values that must not be there
(personal data of a refused file, treatment-revealing values of a blinded build)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def warehouse_text(path: Path) -> dict[str, str]:
    """Every column of every table and view in the DuckDB file (all types cast to text), and the
    column comments: ``schema.table.column`` -> the column's values joined.

    Timestamps are written to the second: the build's own clock (loaded_at 03:47:17.19...) would
    otherwise contain a planted value such as 7.19 by chance."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_catalog = current_database() order by all"
        ).fetchall()
        by_table: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in columns:
            by_table.setdefault((schema, table), []).append((column, data_type))
        text: dict[str, str] = {}
        for (schema, table), typed in by_table.items():
            names = [n for n, _ in typed]
            as_text = [
                f"strftime({q}, '%Y-%m-%d %H:%M:%S')" if data_type.startswith("TIMESTAMP") else f"cast({q} as varchar)"
                for q, data_type in (('"' + n.replace('"', '""') + '"', t) for n, t in typed)
            ]
            values = con.execute(
                f"select {', '.join(f'string_agg({v}, chr(31))' for v in as_text)} "
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
