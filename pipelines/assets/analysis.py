"""Analysis tables in CDISC ADaM style, derived by the pure functions in ``pipelines.derive``."""

import dagster as dg
import duckdb
import polars as pl

from pipelines.assets.metadata import frame_preview
from pipelines.derive import create_adbm, create_adgene_samples, create_adsl
from pipelines.plots import as_markdown_image, mean_by_visit
from pipelines.resources import Blinding, Warehouse
from pipelines.study import load_study
from pipelines.warehouse import apply_comments, atomic, query_sql, table_docs


def write_frame(con: duckdb.DuckDBPyConnection, layer: str, name: str, frame: pl.DataFrame) -> None:
    """Replace ``layer.name`` with ``frame``, in its key order, and write its documentation comments."""
    order = table_docs().get(f"{layer}.{name}", {}).get("order_by")
    if order:
        frame = frame.sort(order, nulls_last=True)
    con.register("_frame", frame.to_arrow())
    try:
        with atomic(con):
            con.execute(f"create schema if not exists {layer}")
            con.execute(f"create or replace table {layer}.{name} as select * from _frame")
            apply_comments(con, layer, name)
    finally:
        con.unregister("_frame")


def _counts(frame: pl.DataFrame) -> dict:
    return {
        "rows": dg.MetadataValue.int(frame.height),
        "subjects": dg.MetadataValue.int(frame["USUBJID"].n_unique()),
        "preview": frame_preview(frame),
    }


def _plots(adbm_frame: pl.DataFrame, subject: pl.DataFrame, blinded: bool) -> dict:
    """%Treg by analysis visit and (masked) arm, and serum NfL by onset, as metadata images."""
    study = load_study()
    responder = study.analysis["treg_responder"]["paramcd"]
    nfl = study.analysis["adsl_baselines"]["nfl_paramcd"]
    metadata = {}
    treg = mean_by_visit(adbm_frame, responder, fmt="png")
    metadata[f"plot_{responder}_by_visit_and_arm"] = dg.MetadataValue.md(
        as_markdown_image(treg, responder) if treg else f"{responder} is withheld in blinded builds"
        if blinded else f"no {responder} values yet"
    )
    onset = adbm_frame.join(subject.select(pl.col("usubjid").alias("USUBJID"), pl.col("onset").alias("ONSET")), on="USUBJID")
    nfl_plot = mean_by_visit(onset, nfl, by="ONSET", fmt="png")
    metadata[f"plot_{nfl}_by_onset"] = dg.MetadataValue.md(as_markdown_image(nfl_plot, nfl) if nfl_plot else f"no {nfl} values yet")
    return metadata


@dg.asset(
    key=["analysis", "adbm"],
    group_name="analysis",
    kinds={"duckdb", "polars"},
    deps=[["staging", "int_biomarker__values"], ["core", "subject"]],
    description=table_docs()["analysis.adbm"]["description"],
)
def adbm(warehouse: Warehouse, blinding: Blinding) -> dg.MaterializeResult:
    study = load_study()
    rules = study.analysis
    with warehouse.connect() as con:
        core = con.sql("select * from staging.int_biomarker__values").pl()
        subject = con.sql("select * from core.subject").pl()
        frame = create_adbm(
            core, subject, study.visits, blinding.mode.arms(),
            rules["blq_imputation"]["rule"], rules["blq_imputation"]["factor"], study.studyid,
            ratio_params=[p.paramcd for p in study.parameters if p.ratio_scale],
        )
        write_frame(con, "analysis", "adbm", frame)
    return dg.MaterializeResult(metadata={**_counts(frame), **_plots(frame, subject, blinding.mode.blinded)})


@dg.asset(
    key=["analysis", "adsl"],
    group_name="analysis",
    kinds={"duckdb", "polars"},
    deps=[["analysis", "adbm"], ["core", "subject"]],
    description=table_docs()["analysis.adsl"]["description"],
)
def adsl(warehouse: Warehouse, blinding: Blinding) -> dg.MaterializeResult:
    study = load_study()
    rules = study.analysis
    with warehouse.connect() as con:
        subject = con.sql("select * from core.subject").pl()
        analysis = con.sql("select * from analysis.adbm").pl()
        frame = create_adsl(
            subject, analysis, study.studyid,
            rules["adsl_baselines"]["pnfh_paramcd"], rules["adsl_baselines"]["nfl_paramcd"],
            rules["pnfh_cutpoint_pgml"], rules["treg_responder"], blinding.mode.arms(),
            rules["blq_imputation"]["factor"],
        )
        write_frame(con, "analysis", "adsl", frame)
    return dg.MaterializeResult(metadata=_counts(frame))


@dg.asset(
    key=["analysis", "adgene_samples"],
    group_name="analysis",
    kinds={"duckdb", "polars"},
    deps=[["core", "sample"], ["core", "subject"], ["staging", "int_transcript_gene__sample_verdicts"]],
    description=table_docs()["analysis.adgene_samples"]["description"],
)
def adgene_samples(warehouse: Warehouse, blinding: Blinding) -> dg.MaterializeResult:
    study = load_study()
    with warehouse.connect() as con:
        samples = con.sql(query_sql("rna_samples")).pl()
        subject = con.sql("select * from core.subject").pl()
        frame = create_adgene_samples(samples, subject, study.visits, blinding.mode.arms(), study.studyid)
        write_frame(con, "analysis", "adgene_samples", frame)
    return dg.MaterializeResult(metadata=_counts(frame))


analysis_assets = [adbm, adsl, adgene_samples]
