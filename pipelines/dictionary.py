"""The data dictionary, generated from ``schemas/``: every published table and column with its
meaning and unit, the parameters, and the analysis derivation rules."""

from __future__ import annotations

from pipelines.study import load_study
from pipelines.warehouse import table_docs

HEADER = """# MIROCALS warehouse data dictionary

Generated from `schemas/tables.yaml` and `schemas/study.yaml` by `mirocals dictionary`; do not edit
by hand. The same descriptions are DuckDB comments on every table and column
(`select * from duckdb_columns()`).
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def render_markdown() -> str:
    """The whole dictionary as Markdown."""
    study = load_study()
    lines = [HEADER, "## Parameters", "", "| PARAMCD | parameter | unit | accepted units (factor) | matrix | LLOQ | ULOQ | plausible range | planned visits | treatment-revealing |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in study.parameters:
        units = ", ".join(f"{u} (x{f:g})" for u, f in p.units.items())
        lines.append(
            f"| {p.paramcd} | {_cell(p.param)} | {p.unit} | {_cell(units)} | {p.matrix} | {p.lloq or ''} | "
            f"{p.uloq or ''} | {p.plausible[0]:g} to {p.plausible[1]:g} | {' '.join(p.visits)} | "
            f"{'yes' if p.treatment_revealing else ''} |"
        )
    lines += ["", "## Visits", "", "| visit | number | label | target day | window |", "| --- | --- | --- | --- | --- |"]
    for v in study.visits:
        lines.append(f"| {v.visit_code} | {v.visit_num} | {_cell(v.label)} | {v.study_day} | {v.window_lo} to {v.window_hi} |")
    lines += ["", "## Analysis rules", ""]
    for name, rule in study.analysis.items():
        lines.append(f"- **{name}**: {_cell(rule)}")
    blinding = study.raw["blinding"]
    lines += [
        "", "## Blinding", "",
        "Blinded builds (the default) carry masked arms from a dummy randomisation: "
        + ", ".join(f"`{a['armcd']}` ({_cell(a['arm'])})" for a in blinding["masked_arms"])
        + ". Values withheld from blinded builds: parameters "
        + ", ".join(p.paramcd for p in study.parameters if p.treatment_revealing)
        + "; genes " + ", ".join(study.revealing_genes()) + ".",
    ]
    lines += ["", "## Tables", ""]
    for key, doc in table_docs().items():
        lines += [f"### `{key}`", "", _cell(doc["description"]), "", "| column | description |", "| --- | --- |"]
        lines += [f"| `{column}` | {_cell(text)} |" for column, text in doc.get("columns", {}).items()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
