"""Blinding: masked arms from a dummy randomisation, withheld treatment-revealing values, and the
checks a real randomisation list must pass before an unblinded build.

A blinded build (the default) never reads the real randomisation list. It randomises the
subjects again with the project's own seed, in permuted blocks within the same strata, to masked
arm codes, so analyses can be dry-run with arms that carry no information. Values of
treatment-revealing measures (schemas/study.yaml) are withheld at load, before anything is stored.
"""

from __future__ import annotations

import json
import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.expectations import SuiteResult, redact_values
from pipelines.ingest.values import in_set
from pipelines.study import load_contracts, load_study
from pipelines.warehouse import has_table

WITHHELD = "withheld (blinded build)"


@dataclass(frozen=True)
class BlindingMode:
    """Whether a build is blinded; an unblinded build names the real randomisation list."""

    randomisation_file: str | None = None

    @property
    def blinded(self) -> bool:
        return self.randomisation_file is None

    def arms(self) -> tuple[dict[str, str], ...]:
        """The arms this build's tables carry: masked codes when blinded."""
        study = load_study()
        return tuple(study.raw["blinding"]["masked_arms"]) if self.blinded else study.arms

    def withheld_columns(self) -> tuple[tuple[str, str], ...]:
        """(family, column) whose delivered values this build does not store: every
        treatment-revealing column, and the gene table's expression (in the revealing genes'
        rows). None in an unblinded build."""
        if not self.blinded:
            return ()
        revealing = ((family, column) for family in load_contracts().families for column in revealing_columns(family))
        return (*revealing, ("transcript_gene", "expression"))

    def withholding(self, family: str) -> dict | None:
        """What this build withholds from a delivery of ``family``: its treatment-revealing
        columns and, for the gene table, the revealing genes in every spelling. Part of the
        version of the rules a delivery is judged by (``rules_version``): when the study
        definition adds to it, the next build withholds the values it had stored
        (:func:`withhold_stored_values`) and judges the delivery again. None when unblinded."""
        if not self.blinded:
            return None
        genes = load_study().raw["blinding"]["treatment_revealing_genes"] if family == "transcript_gene" else []
        return {"columns": sorted(revealing_columns(family)), "genes": genes}


class MixedBlinding(Exception):
    """A build met a warehouse of the other blinding (a blinded build and an unblinded file, or
    the reverse)."""


def refuse_other_blinding(con: duckdb.DuckDBPyConnection, mode: BlindingMode, published: Path) -> None:
    """Stop a build whose work copy ``con`` was built with the other blinding: a blinded build
    never writes into (nor publishes) a warehouse that holds the real arms, and an unblinded
    build never turns a blinded warehouse into an unblinded one. An unblinded warehouse is
    told by its ``audit.unblinding`` table (written by its first build)."""
    tables = {name for name in ("delivery", "unblinding") if has_table(con, "audit", name)}
    if mode.blinded and "unblinding" in tables:
        raise MixedBlinding(
            f"{published} was built unblinded (audit.unblinding records it): a blinded build never writes "
            f"an unblinded warehouse. Build the blinded warehouse's file (--warehouse or MIROCALS_WAREHOUSE); "
            f"if this file is to be blinded, delete it and its work folder {published.parent / '.work'} and "
            f"build again."
        )
    if not mode.blinded and "delivery" in tables and "unblinding" not in tables:
        raise MixedBlinding(
            f"{published} is a blinded warehouse: an unblinded build writes its own file "
            f"(mirocals unblind --out, by default under warehouse/build/unblinded/) and never turns a "
            f"blinded warehouse into an unblinded one."
        )


def revealing_columns(family: str) -> tuple[str, ...]:
    """Delivered columns of ``family`` whose values reveal the arm."""
    return tuple(
        p.source["column"]
        for p in load_study().parameters
        if p.family == family and p.treatment_revealing and "column" in p.source
    )


def names_a_revealing_gene(text: str | None) -> bool:
    """Whether a delivered gene symbol or gene id names a treatment-revealing gene, in any
    spelling: compared after Unicode NFKC (full-width letters, non-breaking spaces) and upper-
    casing; an Ensembl id anywhere in the text (``ENSG00000134460.17``, ``ENSG00000134460|IL2RA``),
    or the text or one of its words, without spaces, dashes or other separators, a symbol, alias
    or other id of the gene (``ctla-4``, ``CD25``, ``HGNC:6008``)."""
    if text is None:
        return False
    ids, names = _revealing_gene_terms()
    upper = unicodedata.normalize("NFKC", str(text)).upper()
    if not upper.isascii():
        return True  # look-alike letters (a Cyrillic Р in FOXР3) cannot be told from the real ones
    joined = re.sub(r"[^A-Z0-9]", "", upper)
    if any(gene_id in joined for gene_id in ids):
        return True
    return joined in names or any(word in names for word in re.split(r"[^A-Z0-9]+", upper))


def _not_an_ensembl_gene_id(text: str | None) -> bool:
    """A gene id that is not an Ensembl gene id (a transcript or RefSeq id, zeros dropped, none):
    the row is held back by gene_id_format or gene_id_present, and which gene it is cannot be
    told, so a blinded build withholds its value too."""
    return text is None or re.fullmatch(r"ENSG[0-9]{11}", str(text)) is None


@cache
def _revealing_gene_terms() -> tuple[tuple[str, ...], frozenset[str]]:
    study = load_study()
    names = (re.sub(r"[^A-Z0-9]", "", unicodedata.normalize("NFKC", name).upper()) for name in study.revealing_gene_names())
    return study.revealing_genes("gene_id"), frozenset(names)


def _revealing_rows(column: pa.ChunkedArray, withhold=names_a_revealing_gene) -> pa.ChunkedArray:
    """Per row, whether ``withhold`` holds for ``column``'s value; judged once per distinct value
    (~20,000 per gene file), not per row."""
    values = [(c.dictionary if pa.types.is_dictionary(c.type) else c).cast(pa.string()) for c in column.chunks]
    distinct = pc.unique(pa.chunked_array(values, pa.string()))
    withheld = [value for value in distinct.to_pylist() if withhold(value)]
    return in_set(column, pa.array(withheld, pa.string()), lambda array: array.cast(pa.string()))


def withheld_values(table: pa.Table, family: str) -> dict[str, bool | pa.ChunkedArray]:
    """The treatment-revealing values of a delivery: per column, ``True`` for all of its values,
    or a mask of the rows whose value is withheld (genes, found by symbol or by gene id)."""
    withheld: dict[str, bool | pa.ChunkedArray] = {c: True for c in revealing_columns(family) if c in table.column_names}
    if family == "transcript_gene" and "expression" in table.column_names and (
        "gene_symbol" in table.column_names or "gene_id" in table.column_names
    ):
        matches = []
        if "gene_symbol" in table.column_names:
            matches.append(_revealing_rows(table["gene_symbol"]))
        if "gene_id" in table.column_names:
            matches.append(_revealing_rows(
                table["gene_id"], lambda text: _not_an_ensembl_gene_id(text) or names_a_revealing_gene(text)))
        withheld["expression"] = pc.fill_null(matches[0] if len(matches) == 1 else pc.or_(*matches), False)
    return withheld


def withhold_revealing_values(table: pa.Table, family: str) -> pa.Table:
    """Null the treatment-revealing values of a delivery (:func:`withheld_values`), and the values
    of columns outside the contract, which nobody has judged for what they reveal (their names
    are kept)."""
    for column, rows in withheld_values(table, family).items():
        index = table.column_names.index(column)
        empty = pa.scalar(None, table.schema.field(column).type)
        values = pa.nulls(table.num_rows, empty.type) if rows is True else pc.if_else(rows, empty, table[column])
        table = table.set_column(index, column, values)
    if "extra_columns" in table.column_names and table["extra_columns"].null_count < table.num_rows:
        table = _withhold_extra_columns(table)
    return table


def _withhold_extra_columns(table: pa.Table) -> pa.Table:
    """``extra_columns`` with every value replaced by :data:`WITHHELD` (one file has one set of
    extra columns, so the names are read from the first row that has them)."""
    extra = table["extra_columns"]
    first = extra.drop_null()[0].as_py()
    withheld = json.dumps({name: WITHHELD for name in json.loads(first)})
    index = table.column_names.index("extra_columns")
    replaced = pc.if_else(pc.is_valid(extra), pa.scalar(withheld, pa.string()), pa.scalar(None, pa.string()))
    return table.set_column(index, table.schema.field(index), replaced.cast(extra.type))


def withhold_stored_values(con: duckdb.DuckDBPyConnection, family: str, delivery_id: int) -> int:
    """Null, in the rows the warehouse keeps of a delivery, the values that the current rules
    withhold (:func:`withheld_values`) and that rules before them let through, a revealing
    gene or column added to the study definition since; and the same values in the reasons and
    examples of its earlier judgments. Returns how many stored rows (delivered rows and
    judgments) lost a value."""
    if not revealing_columns(family) and family != "transcript_gene":
        return 0  # nothing of this family is withheld
    rows = f"raw.{family}__rows"
    stored = {name for name, in con.execute(
        "select column_name from duckdb_columns() where schema_name = 'raw' and table_name = ?", [f"{family}__rows"]
    ).fetchall()}
    changed = 0
    for column in revealing_columns(family):
        if column in stored:
            changed += con.execute(
                f'update {rows} set "{column}" = null where delivery_id = ? and "{column}" is not null', [delivery_id]
            ).fetchone()[0]
    if family == "transcript_gene" and "expression" in stored:
        # judged once per distinct gene of the delivery, by the same rule as at load
        genes = con.sql(
            f"select distinct gene_symbol, gene_id, expression is null as expression from {rows} "
            "where delivery_id = $1 and expression is not null", params=[delivery_id],
        ).to_arrow_table()
        withheld = genes.filter(withheld_values(genes, family)["expression"]).select(["gene_symbol", "gene_id"])
        if withheld.num_rows:
            con.register("withheld_genes", withheld)
            try:
                changed += con.execute(
                    f"update {rows} as stored set expression = null from withheld_genes as gene "
                    "where stored.delivery_id = ? and stored.expression is not null "
                    "and stored.gene_symbol is not distinct from gene.gene_symbol "
                    "and stored.gene_id is not distinct from gene.gene_id",
                    [delivery_id],
                ).fetchone()[0]
            finally:
                con.unregister("withheld_genes")
    return changed + _redact_earlier_judgments(con, family, delivery_id)


def _redact_earlier_judgments(con: duckdb.DuckDBPyConnection, family: str, delivery_id: int) -> int:
    """The reasons and examples of a delivery's stored judgments, without the values of the
    columns a blinded build now withholds (as :func:`withhold_revealing_failures` stores them).
    Returns how many judgments lost a value."""
    columns = [column for column, in con.execute(
        "select distinct column_name from audit.validation where delivery_id = ? and column_name is not null "
        "union select distinct column_name from audit.row_failure where delivery_id = ? and column_name is not null",
        [delivery_id, delivery_id],
    ).fetchall() if mentions_revealing(column, family)]
    if not columns:
        return 0
    failures = con.execute(
        "update audit.row_failure set reason = split_part(reason, ' (delivered:', 1) || ' (delivered: ' || $3 || ')' "
        "where delivery_id = $1 and column_name in (select unnest($2::varchar[])) "
        "and reason <> split_part(reason, ' (delivered:', 1) || ' (delivered: ' || $3 || ')'",
        [delivery_id, columns, WITHHELD],
    ).fetchone()[0]
    outcomes = con.execute(
        "update audit.validation set examples = to_json(list_transform(range(json_array_length(examples)::bigint), lambda i: $3)) "
        "where delivery_id = $1 and column_name in (select unnest($2::varchar[])) and json_array_length(examples) > 0 "
        "and examples <> to_json(list_transform(range(json_array_length(examples)::bigint), lambda i: $3))",
        [delivery_id, columns, WITHHELD],
    ).fetchone()[0]
    return failures + outcomes


def mentions_revealing(column: str | None, family: str) -> bool:
    """Whether a check on ``column`` (``a,b`` for pairs) would show a treatment-revealing value."""
    if column is None:
        return False
    revealing = set(revealing_columns(family))
    if family == "transcript_gene":
        revealing.add("expression")
    return any(c in revealing for c in column.split(","))


def withhold_revealing_failures(result: SuiteResult, family: str) -> SuiteResult:
    """A suite result whose failure reasons, examples and Data Docs hide treatment-revealing values."""
    return redact_values(result, lambda column: mentions_revealing(column, family), WITHHELD)


def make_dummy_randomisation(
    subjects: list[tuple[str, str, object]], kept: dict[str, tuple[str, str, str]] | None = None
) -> pa.Table:
    """A masked list for the randomised ``(usubjid, stratum, randomisation_date)``: permuted
    blocks within strata, by the project's seed, independent of the real allocation.

    ``kept``: the current dummy list, ``usubjid -> (stratum, block_id, armcd)``. Like a real list,
    an allocation is never redrawn: a subject keeps its block and arm for as long as it keeps its
    stratum, so adding, removing or re-dating subjects changes no other subject's dummy arm. New
    subjects fill their stratum's last block, then new blocks, in randomisation order.
    """
    study = load_study()
    blinding = study.raw["blinding"]
    codes = [a["armcd"] for a in blinding["masked_arms"]]
    block_size = int(study.strata["block_size"])
    seed = int(blinding["dummy_seed"])
    kept = kept or {}

    def block(stratum: str, number: int) -> list[str]:
        # Each stratum starts with a half block: the real list's blocks follow randomisation order
        # too, and dummy blocks that started where they start would group the very subjects of
        # the real blocks (one arm leaking would then tell its block's). A block's order is drawn
        # from the seed, its stratum and its number alone.
        size = block_size // 2 if number == 1 else block_size
        rng = np.random.default_rng([seed, zlib.crc32(stratum.encode("utf-8")), number])
        return rng.permutation(np.repeat(codes, size // len(codes))).tolist()

    ordered = sorted(subjects, key=lambda s: (str(s[2]), s[0]))
    allocated: dict[str, tuple[int, str]] = {}
    filled: dict[tuple[str, int], list[str]] = {}
    for usubjid, stratum, _ in ordered:
        previous = kept.get(usubjid)
        if previous is not None and previous[0] == stratum:
            number = int(previous[1].rsplit("-", 1)[1])
            allocated[usubjid] = (number, previous[2])
            filled.setdefault((stratum, number), []).append(previous[2])
    last = {stratum: max(n for s, n in filled if s == stratum) for stratum, _ in filled}
    for usubjid, stratum, _ in ordered:
        if usubjid in allocated:
            continue
        number = last.get(stratum, 1)
        while not (left := _arms_left(block(stratum, number), filled.get((stratum, number), []))):
            number += 1
        arm = left[0]
        allocated[usubjid] = (number, arm)
        filled.setdefault((stratum, number), []).append(arm)
        last[stratum] = number
    rows = {"usubjid": [], "randomisation_number": [], "stratum": [], "block_id": [], "armcd": []}
    for position, (usubjid, stratum, _) in enumerate(ordered, start=1):
        number, arm = allocated[usubjid]
        rows["usubjid"].append(usubjid)
        rows["randomisation_number"].append(position)
        rows["stratum"].append(stratum)
        rows["block_id"].append(f"DUMMY-{stratum}-{number:03d}")
        rows["armcd"].append(arm)
    contract = load_contracts()["randomisation"]
    types = {"VARCHAR": pa.string(), "INTEGER": pa.int32()}
    return pa.table({c.name: pa.array(rows[c.name], types[c.type]) for c in contract.columns})


def _arms_left(drawn: list[str], given: list[str]) -> list[str]:
    """A block's arms in their drawn order, less those already given out."""
    taken = Counter(given)
    left = []
    for arm in drawn:
        if taken[arm] > 0:
            taken[arm] -= 1
        else:
            left.append(arm)
    return left


class RandomisationListRefused(ValueError):
    """The real randomisation list does not match the trial."""


def validate_randomisation_list(listed: list[tuple[str, str, str]], subjects: list[tuple[str, bool, str]]) -> None:
    """Refuse a list unless every randomised subject appears exactly once, with a declared arm and
    the stratum of the subjects file, and nobody else appears.

    ``listed``: (usubjid, armcd, stratum); ``subjects``: (usubjid, randomised, stratum).
    """
    study = load_study()
    problems: list[str] = []
    counts: dict[str, int] = {}
    for usubjid, _, _ in listed:
        counts[usubjid] = counts.get(usubjid, 0) + 1
    twice = sorted(u for u, n in counts.items() if n > 1)
    if twice:
        problems.append(f"listed more than once: {', '.join(twice[:10])}")
    known = {u: (randomised, stratum) for u, randomised, stratum in subjects}
    randomised = {u for u, (r, _) in known.items() if r}
    missing = sorted(randomised - counts.keys())
    if missing:
        problems.append(f"{len(missing)} randomised subject(s) missing from the list: {', '.join(missing[:10])}")
    unknown = sorted(u for u in counts if u not in known)
    if unknown:
        problems.append(f"not in the subjects file: {', '.join(unknown[:10])}")
    not_randomised = sorted(u for u in counts if u in known and not known[u][0])
    if not_randomised:
        problems.append(f"never randomised according to the subjects file: {', '.join(not_randomised[:10])}")
    bad_arms = sorted({a for _, a, _ in listed if a not in study.armcds})
    if bad_arms:
        problems.append(f"arm code(s) {', '.join(map(str, bad_arms))} not in the study definition ({', '.join(study.armcds)})")
    wrong_stratum = sorted(u for u, _, s in listed if u in known and known[u][0] and s != known[u][1])
    if wrong_stratum:
        problems.append(f"stratum differs from the subjects file for: {', '.join(wrong_stratum[:10])}")
    arm_counts = {a: sum(1 for _, x, _ in listed if x == a) for a in study.armcds}
    if not bad_arms and len(set(arm_counts.values())) > 1 and not problems:
        # 1:1 allocation: a clear imbalance means the wrong list or a damaged one
        low, high = min(arm_counts.values()), max(arm_counts.values())
        if high - low > int(study.strata["block_size"]) * len(study.strata["levels"]["country"]) * len(study.strata["levels"]["onset"]):
            problems.append(f"arms are not 1:1 within permuted blocks: {arm_counts}")
    if problems:
        raise RandomisationListRefused("The randomisation list is refused: " + "; ".join(problems) + ".")
