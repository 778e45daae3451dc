"""Exports of published tables: Parquet (for R's arrow and duckdb), CSV, SAS transport (XPT)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from pipelines.api import build_query, query_in, resolve_table
from pipelines.warehouse import holds_real_arms, owner_only_files, read_connection, sas_labels, table_docs

FORMATS = ("parquet", "csv", "xpt")
XPT_NAME_LENGTH = 8
XPT_LABEL_LENGTH = 40
XPT_TEXT_BYTES = 200  # SAS transport v5 holds at most 200 bytes per character value
SAS_EPOCH = pd.Timestamp("1960-01-01")


def xpt_names(columns: list[str]) -> dict[str, str]:
    """Unique upper-case SAS names of at most 8 characters for ``columns``."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for column in columns:
        base = re.sub(r"[^A-Za-z0-9_]", "_", column).upper()[:XPT_NAME_LENGTH]
        name, n = base, 1
        while name in used:
            suffix = str(n)
            name = base[: XPT_NAME_LENGTH - len(suffix)] + suffix
            n += 1
        used.add(name)
        names[column] = name
    return names


def xpt_label(text: str) -> str:
    """``text`` as a SAS label of at most 40 bytes: whole words, without an unclosed bracket."""
    if len(text.encode("utf-8")) <= XPT_LABEL_LENGTH:
        return text
    label = ""
    for word in text.split(" "):
        longer = f"{label} {word}" if label else word
        if len(longer.encode("utf-8")) > XPT_LABEL_LENGTH:
            break
        label = longer
    if label.count("(") > label.count(")"):
        label = label[: label.rfind("(")]
    return label.rstrip(" ,;:-") or text.encode("utf-8")[:XPT_LABEL_LENGTH].decode("utf-8", "ignore")


def export_table(warehouse: Path, table: str, fmt: str, out: Path, **filters) -> int:
    """Write a published table (optionally filtered) to ``out``; returns the row count."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: use {', '.join(FORMATS)}")
    key = resolve_table(table)
    build_query(key, **filters)  # checked before the warehouse is opened
    with read_connection(warehouse) as con, owner_only_files(holds_real_arms(con)):
        out.parent.mkdir(parents=True, exist_ok=True)
        sql, values = query_in(con, key, **filters)
        rows = con.execute(f"select count(*) from ({sql})", values).fetchone()[0]
        if fmt in ("parquet", "csv"):
            option = "format parquet, compression zstd" if fmt == "parquet" else "format csv, header true"
            con.execute(f"copy ({sql}) to '{_sql_path(out)}' ({option})", values)
        else:
            result = con.execute(sql, values)
            dates = [name for name, kind, *_ in result.description if str(kind) == "DATE"]
            write_xpt(result.df(), key, out, dates=dates)
    return rows


def export_gene_matrix(warehouse: Path, out: Path, fmt: str = "parquet") -> tuple[int, int, int]:
    """Genes x samples matrix of log2 CPM for omics tools, plus a sample annotation file.

    A gene without one value (the treatment-revealing genes of a blinded build, withheld; a gene
    held back in every sample) is left out: an all-empty row stops some tools. Returns the genes
    written, the samples, and the genes left out."""
    if fmt not in ("parquet", "csv"):
        raise ValueError("The gene matrix is written as parquet or csv")
    annotation = out.with_name(f"{out.stem}_samples.{fmt}")
    option = "format parquet, compression zstd" if fmt == "parquet" else "format csv, header true"
    # the samples with gene rows; ABLFL marks each subject's baseline sample, for paired analyses
    samples_sql = ("select distinct SAMPLEID, gene.USUBJID, gene.TRTP, gene.AVISIT, gene.AVISITN, gene.ADT, gene.ADY, "
                   "rna.ABLFL, gene.ANL01FL from analysis.adgene as gene join analysis.adgene_samples as rna using (SAMPLEID) "
                   "order by USUBJID, AVISITN, ADY, SAMPLEID")
    with read_connection(warehouse) as con, owner_only_files(holds_real_arms(con)):
        out.parent.mkdir(parents=True, exist_ok=True)
        # the matrix's sample columns in the annotation's row order: omics tools pair them by position
        order = [sample for sample, *_ in con.execute(samples_sql).fetchall()]
        listed = ", ".join("'" + sample.replace("'", "''") + "'" for sample in order) or "null"
        valued = ("select GENEID, GENESYM, SAMPLEID, AVAL from analysis.adgene where GENEID in "
                  "(select GENEID from analysis.adgene group by GENEID having count(AVAL) > 0)")
        con.execute(
            f"copy (pivot ({valued}) on SAMPLEID in ({listed}) "
            f"using first(AVAL) order by GENEID) to '{_sql_path(out)}' ({option})"
        )
        con.execute(f"copy ({samples_sql}) to '{_sql_path(annotation)}' ({option})")
        genes, left_out = con.execute(
            "select count(*) filter (where valued), count(*) filter (where not valued) from "
            "(select GENEID, count(AVAL) > 0 as valued from analysis.adgene group by GENEID)").fetchone()
    return genes, len(order), left_out


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


def _is_list(value) -> bool:
    """A list value of a cell (an array, not a text)."""
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def write_xpt(frame, key: str, out: Path, dates: list[str] = ()) -> None:
    """Write ``frame`` as SAS transport v5. ``dates`` are DATE columns: written as SAS dates (days
    since 1960 with a date format, as ADaM's *DT variables are), not as datetimes."""
    import pyreadstat

    for column in dates:
        # pandas holds them as datetime64: written as SAS dates, days since 1960-01-01 with a date
        # format, which stays numeric also when every value is empty
        frame[column] = (frame[column] - SAS_EPOCH).dt.days.astype("float64")
    names = xpt_names(list(frame.columns))
    docs = table_docs()[key].get("columns", {})
    standard = sas_labels()
    labels = [standard.get(c) or xpt_label(str(docs.get(c, c))) for c in frame.columns]
    frame = frame.rename(columns=names)
    for column in frame.columns:
        if str(frame[column].dtype) in ("boolean", "bool"):
            frame[column] = frame[column].map({True: "Y", False: "N"})
        elif frame[column].map(_is_list).any():
            # a list (core.visit's matrices): its items joined, as the CSV export writes them
            frame[column] = frame[column].map(lambda v: ", ".join(map(str, v)) if _is_list(v) else v)
    too_long = {}
    for original, column in zip(names, frame.columns, strict=True):
        if frame[column].dtype == object or str(frame[column].dtype).startswith("str"):
            longest = frame[column].dropna().map(lambda v: len(str(v).encode("utf-8"))).max()
            if longest and longest > XPT_TEXT_BYTES:
                too_long[original] = int(longest)
    if too_long:
        # refused rather than cut: a truncated value would be a wrong value in SAS
        raise ValueError(
            f"{key} cannot be written as SAS transport v5: character values are limited to {XPT_TEXT_BYTES} bytes, "
            + ", ".join(f"{c} holds up to {n}" for c, n in too_long.items())
            + ". Export it as parquet or csv."
        )
    pyreadstat.write_xport(
        frame, str(out), file_label=key[:XPT_LABEL_LENGTH], column_labels=labels,
        variable_format={names[c]: "DATE9" for c in dates},
        table_name=key.split(".")[1].upper()[:XPT_NAME_LENGTH], file_format_version=5,
    )
