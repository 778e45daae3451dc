"""A scanner for arm information in a warehouse file, exported tables and metadata.

For every table with a subject column, every other column is compared between the true arms
(read straight from the real randomisation list): numeric columns by the standardised mean
difference of per-subject means, categorical columns by Cramér's V. Tables without a subject
column are searched for the real arm codes and labels. The thresholds are large effects: the
real effects in MIROCALS-shaped data (ld-IL-2 doubles %Treg) are far above them, chance
associations across a few hundred columns far below.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines.study import load_study

SMD_THRESHOLD = 0.8
CRAMERS_V_THRESHOLD = 0.5
MAX_CATEGORIES = 12
MIN_SUBJECTS = 40  # fewer subjects (a handful of quarantined rows, say) cannot show an association
SUBJECT_COLUMNS = ("usubjid", "USUBJID")
PARAM_COLUMNS = ("paramcd", "PARAMCD", "gene_symbol", "GENESYM")


def true_arms(randomisation_list: Path) -> dict[str, str]:
    return {r["usubjid"]: r["armcd"] for r in pq.read_table(randomisation_list).to_pylist()}


def arm_words() -> list[str]:
    """Strings that name a real arm: codes and labels from the study definition."""
    study = load_study()
    return [a["armcd"] for a in study.arms] + [a["arm"] for a in study.arms]


def _smd(a: list[float], b: list[float]) -> float:
    if len(a) + len(b) < MIN_SUBJECTS or min(len(a), len(b)) < 10:
        return 0.0
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
    pooled = math.sqrt((var_a + var_b) / 2)
    return abs(mean_a - mean_b) / pooled if pooled > 0 else (0.0 if mean_a == mean_b else math.inf)


def _cramers_v(pairs: list[tuple[str, str]]) -> float:
    table: dict[tuple[str, str], int] = defaultdict(int)
    for value, arm in pairs:
        table[(value, arm)] += 1
    values = sorted({v for v, _ in pairs})
    arms = sorted({a for _, a in pairs})
    if len(pairs) < MIN_SUBJECTS or len(values) < 2 or len(arms) < 2 or len(values) > MAX_CATEGORIES:
        return 0.0
    n = len(pairs)
    chi2 = 0.0
    for v in values:
        row = sum(table[(v, a)] for a in arms)
        for a in arms:
            col = sum(table[(w, a)] for w in values)
            expected = row * col / n
            chi2 += (table[(v, a)] - expected) ** 2 / expected if expected else 0
    return math.sqrt(chi2 / (n * (min(len(values), len(arms)) - 1)))


def association_findings(rows: list[dict], arms: dict[str, str], where: str) -> list[str]:
    """Columns of ``rows`` (dicts with a subject column) that agree with the arm beyond chance."""
    if not rows:
        return []
    subject_col = next((c for c in SUBJECT_COLUMNS if c in rows[0]), None)
    if subject_col is None:
        return []
    group_col = next((c for c in PARAM_COLUMNS if c in rows[0]), None)
    findings = []
    for column in rows[0]:
        if column in (subject_col, group_col):
            continue
        per_group: dict[object, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            subject = row[subject_col]
            if subject not in arms or row[column] is None:
                continue
            per_group[row.get(group_col)][subject].append(row[column])
        for group, by_subject in per_group.items():
            sample = next(iter(by_subject.values()))[0]
            if isinstance(sample, bool) or isinstance(sample, str):
                pairs = [("|".join(sorted({str(v) for v in vals})), arms[s]) for s, vals in by_subject.items()]
                v = _cramers_v(pairs)
                if v > CRAMERS_V_THRESHOLD:
                    findings.append(f"{where}.{column}[{group}]: Cramér's V {v:.2f}")
            elif isinstance(sample, (int, float)) or hasattr(sample, "toordinal"):
                numeric = {
                    s: sum((x.toordinal() if hasattr(x, "toordinal") else float(x)) for x in vals) / len(vals)
                    for s, vals in by_subject.items()
                    if all(not (isinstance(x, float) and math.isnan(x)) for x in vals)
                }
                codes = sorted({arms[s] for s in numeric})
                if len(codes) == 2:
                    a = [x for s, x in numeric.items() if arms[s] == codes[0]]
                    b = [x for s, x in numeric.items() if arms[s] == codes[1]]
                    smd = _smd(a, b)
                    if smd > SMD_THRESHOLD:
                        findings.append(f"{where}.{column}[{group}]: standardised mean difference {smd:.2f}")
    return findings


def scan_warehouse(path: Path, arms: dict[str, str]) -> list[str]:
    """Every finding in every table and column of a warehouse file."""
    findings: list[str] = []
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where not internal "
            "union all select schema_name, view_name from duckdb_views() where not internal "
            "order by 1, 2"
        ).fetchall()
        words = arm_words()
        for schema, table in tables:
            cursor = con.execute(f'select * from "{schema}"."{table}"')
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r)) for r in cursor.fetchall()]
            findings += association_findings(rows, arms, f"{schema}.{table}")
            if not any(c in names for c in SUBJECT_COLUMNS):
                text = " ".join(str(v) for row in rows for v in row.values() if isinstance(v, str))
                findings += [f"{schema}.{table} mentions {w!r}" for w in words if f'"{w}"' in text or f" {w} " in f" {text} "]
    finally:
        con.close()
    return findings
