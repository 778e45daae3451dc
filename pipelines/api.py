"""Pull tidy tables from the warehouse into Polars (or pandas), read-only.

    from pipelines.api import load
    adbm = load("adbm", params=["NFLS"], visits=["BASELINE", "M3"], arm="A")
    df = load("core.neurofilament", params=["NFLS"], pandas=True)
    genes = load("adgene_change", genes=["CD4", "CD8A"])

Filters are pushed into DuckDB as SQL parameters; table and column names come from the
declared table contracts (``schemas/tables.yaml``) only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines.blinding import names_a_revealing_gene
from pipelines.settings import get_settings
from pipelines.study import load_study
from pipelines.warehouse import has_table, holds_real_arms, read_connection, table_docs

# The column each filter applies to, in analysis (ADaM) tables and in core tables.
FILTER_COLUMNS = {
    "params": ("PARAMCD", "paramcd"),
    "visits": ("AVISIT", "visit_code"),
    "arm": ("TRTP", "TRT01P", "armcd"),
}


# The gene id column of the gene tables: in analysis (ADaM) tables and in core.
GENE_ID_COLUMNS = ("GENEID", "gene_id")
ENSEMBL_GENE_ID = re.compile(r"ENSG[0-9]{11}")


class UnknownTable(ValueError):
    """The table is not one of the published tables."""


def resolve_table(table: str) -> str:
    """``adbm`` -> ``analysis.adbm``; a qualified name must be a declared table."""
    declared = table_docs()
    if table in declared:
        return table
    matches = [key for key in declared if key.split(".")[1] == table]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UnknownTable(f"Table {table!r} is ambiguous: name its schema, {' or '.join(sorted(matches))}")
    raise UnknownTable(f"Unknown table {table!r}; published tables: {', '.join(sorted(declared))}")


def _as_list(wanted: str | Sequence[str]) -> list[str]:
    """One value or several: a bare string is one value, not its letters."""
    return [wanted] if isinstance(wanted, str) else list(wanted)


def _known_values(name: str, wanted: str | Sequence[str]) -> list[str]:
    """Parameter or visit codes, refused when the study does not declare them (a misspelt code
    would otherwise match nothing and return an empty table)."""
    study = load_study()
    known = [p.paramcd for p in study.parameters] if name == "params" else [v.visit_code for v in study.visits]
    values = _as_list(wanted)
    unknown = [v for v in values if v not in known]
    if unknown:
        label = "parameter" if name == "params" else "visit"
        raise ValueError(f"Unknown {label} {', '.join(map(repr, unknown))}; {label}s are {', '.join(known)}")
    return values


# Every symbol each gene id was delivered under (pipelines: int_transcript_gene__delivered_symbols)
DELIVERED_SYMBOLS = "staging.int_transcript_gene__delivered_symbols"


def _gene_condition(key: str, declared: dict, gene_ids: str | Sequence[str]) -> tuple[str, list[str]]:
    """The condition keeping the rows of ``gene_ids`` (see :func:`gene_ids`). Constants, not a
    lookup: a filter on constant gene ids is pushed below analysis.adgene_change's window and
    skips to the genes' row groups, where a subquery would make DuckDB compute every gene."""
    column = next((c for c in GENE_ID_COLUMNS if c in declared), None)
    if column is None:
        raise ValueError(f"{key} cannot be filtered by genes")
    ids = _as_list(gene_ids)
    if not ids:
        raise ValueError("genes: name at least one gene")
    return f"{column} in ({', '.join('?' for _ in ids)})", ids


def gene_ids(con, genes: str | Sequence[str]) -> list[str]:
    """The Ensembl gene ids of ``genes``, each an id or a symbol: every gene id delivered under
    that symbol, so that a gene renamed between deliveries is found by its newer or its older name.
    A gene the warehouse does not hold (a misspelt symbol, a versioned id) is refused, not
    answered with an empty table, and so is a treatment-revealing gene asked of a blinded
    warehouse (its values are withheld)."""
    wanted = _as_list(genes)
    if not holds_real_arms(con):
        _refuse_withheld([g for g in wanted if names_a_revealing_gene(g)])
    schema, table = DELIVERED_SYMBOLS.split(".")
    if not has_table(con, schema, table):
        raise ValueError("This warehouse was built before genes could be looked up by name: build it again "
                         "(`mirocals build`) to pull genes")
    found = con.execute(
        f"select distinct gene_id, gene_id from {DELIVERED_SYMBOLS} where gene_id in (select unnest($1::varchar[])) "
        f"union select distinct gene_symbol, gene_id from {DELIVERED_SYMBOLS} "
        "where gene_symbol in (select unnest($1::varchar[]))",
        [wanted]).fetchall()
    unknown = [g for g in wanted if g not in {name for name, _ in found}]
    if unknown:
        raise ValueError(
            f"No gene {', '.join(map(repr, unknown))} in this warehouse; name genes by Ensembl gene id without its "
            "version (ENSG00000010610) or by a symbol as delivered (case matters)")
    return sorted({gene_id for _, gene_id in found})


def _arm_values(arm: str | Sequence[str], column: str) -> list[str]:
    """Arm codes or labels, as the column holds them: labels in ADaM tables (TRTP, TRT01P),
    codes in core tables. The real and the masked arms are both known (their codes and labels
    differ), so the same call works on a blinded and on an unblinded warehouse."""
    study = load_study()
    arms = [*study.arms, *study.raw["blinding"]["masked_arms"]]
    by_code = {a["armcd"]: a["arm"] for a in arms}
    by_label = {a["arm"]: a["armcd"] for a in arms}
    wanted = _as_list(arm)
    unknown = [a for a in wanted if a not in by_code and a not in by_label]
    if unknown:
        raise ValueError(
            f"Unknown arm {', '.join(map(repr, unknown))}; arms are {', '.join(sorted(by_code))} "
            f"({', '.join(sorted(by_label))})"
        )
    if column == "armcd":
        return [by_label.get(a, a) for a in wanted]
    return [by_code.get(a, a) for a in wanted]


def refuse_arms_not_held(con, arm: str | Sequence[str] | None) -> None:
    """An arm of the study that this warehouse does not hold is refused, not answered with an
    empty table: the real arms asked of a blinded warehouse (its arms are masked), or the masked
    arms of an unblinded one. Its arms are in ``ref.arm``."""
    if arm is None:
        return
    held = dict(con.execute("select armcd, arm from ref.arm order by armcd").fetchall())
    missing = [a for a in _as_list(arm) if a not in held and a not in held.values()]
    if missing:
        masked = {a["armcd"] for a in load_study().raw["blinding"]["masked_arms"]}
        kind = "blinded: its arms are masked" if set(held) <= masked else "unblinded"
        raise ValueError(
            f"This warehouse holds no arm {', '.join(map(repr, missing))}; it is {kind}, and its arms are "
            + ", ".join(f"{code} ({label})" for code, label in held.items())
        )


def refuse_withheld_params(con, params: str | Sequence[str] | None) -> None:
    """A treatment-revealing parameter asked of a blinded warehouse is refused, not answered with
    an empty table: its values are withheld (``ref.parameter.treatment_revealing``)."""
    if params is None or holds_real_arms(con):
        return
    withheld = {code for code, in con.execute("select paramcd from ref.parameter where treatment_revealing").fetchall()}
    _refuse_withheld([p for p in _as_list(params) if p in withheld])


def _refuse_withheld(asked: list[str]) -> None:
    """Refuse the parameters or genes ``asked`` of a blinded warehouse that withholds them."""
    if asked:
        raise ValueError(
            f"{', '.join(asked)} {'is' if len(asked) == 1 else 'are'} withheld from this blinded warehouse: "
            "treatment-revealing values are not stored until the trial is unblinded"
        )


def query_in(con, table: str, **filters) -> tuple[str, list]:
    """:func:`build_query` (same filters) against the open warehouse ``con``: an arm it does not
    hold and a parameter or gene it withholds are refused, and genes are looked up as their ids."""
    refuse_arms_not_held(con, filters.get("arm"))
    refuse_withheld_params(con, filters.get("params"))
    if filters.get("genes") is not None:
        filters["genes"] = gene_ids(con, filters["genes"])
    return build_query(table, **filters)


def build_query(
    table: str,
    params: str | Sequence[str] | None = None,
    visits: str | Sequence[str] | None = None,
    arm: str | Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    genes: str | Sequence[str] | None = None,
) -> tuple[str, list]:
    """The SELECT and its parameters for a filtered pull of a declared table; ``genes`` are gene
    ids (:func:`gene_ids` finds them), which is all this checks of them."""
    key = resolve_table(table)
    declared = table_docs()[key].get("columns", {})
    if columns:
        unknown = [c for c in columns if c not in declared]
        if unknown:
            raise ValueError(f"{key} has no column(s) {', '.join(unknown)}")
    selected = ", ".join(columns) if columns else "*"
    where, values = [], []
    for name, wanted in (("params", params), ("visits", visits), ("arm", arm)):
        if wanted is None:
            continue
        column = next((c for c in FILTER_COLUMNS[name] if c in declared), None)
        if column is None:
            raise ValueError(f"{key} cannot be filtered by {name}")
        items = _arm_values(wanted, column) if name == "arm" else _known_values(name, wanted)
        where.append(f"{column} in ({', '.join('?' for _ in items)})")
        values.extend(items)
    if genes is not None:
        condition, items = _gene_condition(key, declared, genes)
        where.append(condition)
        values.extend(items)
    sql = f"select {selected} from {key}" + (f" where {' and '.join(where)}" if where else "")
    order = table_docs()[key].get("order_by")
    if order:
        sql += f" order by {', '.join(order)}"
    return sql, values


def load(
    table: str,
    params: str | Sequence[str] | None = None,
    visits: str | Sequence[str] | None = None,
    arm: str | Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    warehouse: str | Path | None = None,
    pandas: bool = False,
    genes: str | Sequence[str] | None = None,
):
    """A published table as a Polars DataFrame (or pandas with ``pandas=True``), filtered in DuckDB.
    ``genes`` (the gene tables): Ensembl gene ids or symbols."""
    build_query(table, params, visits, arm, columns, genes)  # checked before the warehouse is opened
    with read_connection(get_settings(warehouse=warehouse).warehouse, sandboxed=True) as con:
        sql, values = query_in(con, table, params=params, visits=visits, arm=arm, columns=columns, genes=genes)
        frame: pl.DataFrame = con.sql(sql, params=values).pl()
    return frame.to_pandas() if pandas else frame
