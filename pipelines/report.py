"""The static HTML report: deliveries and quality over time, biomarker plots by visit and arm."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jinja2

from pipelines.plots import deliveries_over_time, mean_by_visit
from pipelines.study import load_study
from pipelines.warehouse import holds_real_arms, owner_only_files, query_sql, read_connection

TEMPLATES = Path(__file__).parent / "templates"


def _svg(data: bytes | None) -> str:
    if data is None:
        return ""
    text = data.decode("utf-8")
    return text[text.index("<svg"):]


def write_report(warehouse: Path, out: Path) -> Path:
    """Write ``out/index.html`` for the warehouse; returns its path."""
    study = load_study()
    with read_connection(warehouse) as con:
        reconciliation = con.sql("select * from audit.reconciliation").pl()
        families = con.sql(query_sql("reconciliation_by_family")).pl().to_dicts()
        rules = con.execute(
            "select family, rule, count(*), any_value(reason) from quarantine.rejected_rows group by all order by 1, 3 desc"
        ).fetchall()
        adbm = con.sql("select * from analysis.adbm").pl()
        adsl = con.sql("select USUBJID, ONSET from analysis.adsl").pl()
        armcds = {r[0] for r in con.execute("select armcd from ref.arm").fetchall()}
        unblinding = (
            con.execute("select max(unblinded_at) from audit.unblinding").fetchone()[0]
            if holds_real_arms(con)
            else None
        )
    blinded = not armcds & set(study.armcds)
    withheld = [p.paramcd for p in study.parameters if p.treatment_revealing] if blinded else []
    plotted = [p.paramcd for p in study.parameters if p.paramcd not in withheld]
    biomarker_plots = [
        {"paramcd": code, "svg": _svg(mean_by_visit(adbm, code))} for code in plotted
    ]
    onset = adbm.join(adsl, on="USUBJID", how="left")
    html = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True).get_template(
        "report.html.j2"
    ).render(
        warehouse=warehouse,
        written=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        blinded=blinded,
        masked_arms=", ".join(a["armcd"] for a in study.raw["blinding"]["masked_arms"]),
        withheld=", ".join(withheld + list(study.revealing_genes())) if blinded else "",
        unblinding=unblinding,
        families=families,
        rules=[{"family": f, "rule": r, "rows": n, "example": e} for f, r, n, e in rules],
        deliveries_plot=_svg(deliveries_over_time(reconciliation)),
        biomarker_plots=[p for p in biomarker_plots if p["svg"]],
        withheld_params=withheld,
        onset_plot=_svg(mean_by_visit(onset, study.analysis["adsl_baselines"]["nfl_paramcd"], by="ONSET")),
    )
    index = out / "index.html"
    with owner_only_files(unblinding is not None):
        out.mkdir(parents=True, exist_ok=True)
        index.write_text(html, encoding="utf-8")
    return index
