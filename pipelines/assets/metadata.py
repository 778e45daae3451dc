"""Materialisation metadata helpers: previews as Markdown tables."""

import dagster as dg
import polars as pl

PREVIEW_ROWS = 5
CELL_WIDTH = 40


def markdown_table(columns: list[str], rows: list[tuple]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if v is None else str(v).replace("|", "/")[:CELL_WIDTH] for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_preview(con, table: str) -> dg.MetadataValue:
    """The first rows of a warehouse table."""
    cursor = con.execute(f"select * from {table} limit {PREVIEW_ROWS}")
    return markdown_table([d[0] for d in cursor.description], cursor.fetchall())


def frame_preview(frame: pl.DataFrame) -> dg.MetadataValue:
    """The first rows of a DataFrame."""
    return markdown_table(frame.columns, frame.head(PREVIEW_ROWS).rows())
