"""Figures for materialisation metadata and the HTML report (matplotlib, no display needed)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

FIGSIZE = (7.0, 3.6)


def _finish(fig, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format=fmt, dpi=96 if fmt == "png" else None)
    plt.close(fig)
    return buffer.getvalue()


def mean_by_visit(adbm: pl.DataFrame, paramcd: str, by: str = "TRTP", fmt: str = "svg") -> bytes | None:
    """Mean AVAL (with its standard error) by analysis visit, one line per value of ``by``.

    ``adbm`` needs PARAMCD, AVISIT, AVISITN, AVAL, ANL01FL and ``by``. None when there is no value.
    """
    data = adbm.filter((pl.col("PARAMCD") == paramcd) & (pl.col("ANL01FL") == "Y") & pl.col("AVAL").is_not_null())
    if data.is_empty():
        return None
    summary = (
        data.group_by(by, "AVISITN", "AVISIT")
        .agg(pl.col("AVAL").mean().alias("mean"), (pl.col("AVAL").std() / pl.len().sqrt()).alias("se"), pl.len().alias("n"))
        .sort(by, "AVISITN")
    )
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for group, rows in summary.group_by(by, maintain_order=True):
        label = group[0] if group[0] is not None else "not randomised"
        ax.errorbar(rows["AVISITN"], rows["mean"], yerr=rows["se"].fill_null(0), marker="o", capsize=3, label=str(label))
    visits = summary.select("AVISITN", "AVISIT").unique().sort("AVISITN")
    ax.set_xticks(visits["AVISITN"].to_list(), visits["AVISIT"].to_list(), rotation=45)
    unit = data["AVALU"][0] if "AVALU" in data.columns else ""
    param = data["PARAM"][0] if "PARAM" in data.columns else paramcd
    ax.set_title(f"{param}: mean (SE) by analysis visit")
    ax.set_ylabel(unit)
    ax.legend(title=by, fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, fmt)


def deliveries_over_time(reconciliation: pl.DataFrame, fmt: str = "svg") -> bytes | None:
    """Share of delivered rows held back, per delivery in arrival order, one panel per family."""
    data = reconciliation.filter(pl.col("rows_delivered").is_not_null() & (pl.col("rows_delivered") > 0))
    if data.is_empty():
        return None
    families = sorted(data["family"].unique().to_list())
    fig, axes = plt.subplots(1, len(families), figsize=(2.2 * len(families) + 1, 3.2), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        rows = data.filter(pl.col("family") == family).sort("delivery_id")
        held = (rows["rows_quarantined"] / rows["rows_delivered"] * 100).to_list()
        colours = ["#c0392b" if s != "loaded" and s != "loaded_with_quarantine" else "#2e86c1" for s in rows["status"]]
        ax.bar(range(1, len(held) + 1), held, color=colours)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("delivery", fontsize=8)
        ax.set_xticks(range(1, len(held) + 1))
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("% of rows held back")
    return _finish(fig, fmt)


def as_markdown_image(png: bytes, alt: str) -> str:
    """A PNG as a Markdown image (data URI), for Dagster metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
