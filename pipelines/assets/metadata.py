"""Materialisation metadata helpers: previews as Markdown tables."""

import dagster as dg
import polars as pl

from pipelines.warehouse import has_table

PREVIEW_ROWS = 5
CELL_WIDTH = 80  # a refused file's reason starts with its path
# The columns that tell which delivery a row comes from, newest first in a preview.
DELIVERY_COLUMNS = ("delivery_id", "replaced_by_delivery_id", "SRCDLVID")


def markdown_table(columns: list[str], rows: list[tuple]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if v is None else str(v).replace("|", "/")[:CELL_WIDTH] for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_preview(con, table: str, newest_first: bool = False, where: str = "true") -> dg.MetadataValue:
    """The first rows of a warehouse table, of those that meet the SQL condition ``where``; with
    ``newest_first``, those of its newest deliveries (what a data manager looks for after a run),
    where the table names its delivery."""
    cursor = con.execute(f"select * from {table} limit 0")
    columns = [d[0] for d in cursor.description]
    delivery = next((c for c in DELIVERY_COLUMNS if c in columns), None) if newest_first else None
    if delivery is None:
        return markdown_table(columns, con.execute(f"select * from {table} where {where} limit {PREVIEW_ROWS}").fetchall())
    return markdown_table(columns, _newest_rows(con, table, delivery, where))


# How many of the newest deliveries a preview first looks in (then twice as many, and so on)
# before it orders the whole table: with their numbers written out, DuckDB skips the row groups
# of other deliveries (ordering quarantine.rejected_rows whole reads every gene row).
NEWEST_DELIVERY_WINDOW = 8


def _newest_rows(con, table: str, delivery: str, where: str) -> list[tuple]:
    ordered = f"order by {delivery} desc nulls last limit {PREVIEW_ROWS}"
    newest = [i for i, in con.execute(
        "select delivery_id from audit.delivery order by delivery_id desc"
    ).fetchall()] if has_table(con, "audit", "delivery") else []
    window = NEWEST_DELIVERY_WINDOW
    while window < len(newest):
        # every delivery number in the table is registered, so the rows of the newest deliveries
        # come first in the whole table's order too
        listed = ", ".join(str(int(i)) for i in newest[:window])
        rows = con.execute(f"select * from {table} where ({where}) and {delivery} in ({listed}) {ordered}").fetchall()
        if len(rows) == PREVIEW_ROWS:
            return rows
        window *= 2
    return con.execute(f"select * from {table} where {where} {ordered}").fetchall()


def frame_preview(frame: pl.DataFrame) -> dg.MetadataValue:
    """The first rows of a DataFrame."""
    return markdown_table(frame.columns, frame.head(PREVIEW_ROWS).rows())
