"""Materialisation metadata helpers: previews as Markdown tables."""

import dagster as dg
import polars as pl

PREVIEW_ROWS = 5
CELL_WIDTH = 80  # a refused file's reason starts with its path
# The columns that tell which delivery a row comes from, newest first in a preview.
DELIVERY_COLUMNS = ("delivery_id", "replaced_by_delivery_id", "SRCDLVID")


def markdown_table(columns: list[str], rows: list[tuple]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if v is None else str(v).replace("|", "/")[:CELL_WIDTH] for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_preview(con, table: str, newest_first: bool = False) -> dg.MetadataValue:
    """The first rows of a warehouse table; with ``newest_first``, those of its newest deliveries
    (what a data manager looks for after a run), where the table names its delivery."""
    order = ""
    if newest_first:
        columns = [d[0] for d in con.execute(f"select * from {table} limit 0").description]
        delivery = next((c for c in DELIVERY_COLUMNS if c in columns), None)
        order = f" order by {delivery} desc nulls last" if delivery else ""
    cursor = con.execute(f"select * from {table}{order} limit {PREVIEW_ROWS}")
    return markdown_table([d[0] for d in cursor.description], cursor.fetchall())


def frame_preview(frame: pl.DataFrame) -> dg.MetadataValue:
    """The first rows of a DataFrame."""
    return markdown_table(frame.columns, frame.head(PREVIEW_ROWS).rows())
