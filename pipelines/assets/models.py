"""SQL model assets: one asset per file under ``warehouse/models/<layer>/<name>.sql``."""


from dataclasses import dataclass

import dagster as dg

from pipelines.assets.metadata import table_preview
from pipelines.resources import Warehouse
from pipelines.study import load_contracts
from pipelines.warehouse import model_sql, run_incremental_model, run_model, table_docs

RAW = tuple(f"raw.{family}" for family in load_contracts().families)


@dataclass(frozen=True)
class Model:
    """One model file. ``materialized`` as in dbt: ``table`` (rebuilt every build), ``view``, or
    ``incremental`` (takes in only the new deliveries of ``family``; ``unique_key`` rows replace
    the stored rows with that key, other rows are appended)."""

    layer: str
    name: str
    deps: tuple[str, ...]
    materialized: str = "table"
    family: str | None = None
    unique_key: str | None = None
    linked_by_sample: bool = False  # subject, arm, visit and study day are all its sample's
    counted: bool = False  # a view whose rows are few enough to count at every build
    previewed: bool = True  # False: a view whose first rows cost a pass over the gene table
    # the rows a preview leaves out (a SQL condition on the rows it shows, and what it leaves out)
    preview_leaves_out: tuple[str, str] | None = None


    @property
    def view(self) -> bool:
        return self.materialized == "view"

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.name}"


# The model graph, in build order. Staging models carry qc_rule / is_current per delivered row.
MODELS: tuple[Model, ...] = (
    Model("staging", "stg_row_failures", RAW, materialized="view"),
    Model("staging", "stg_trial__subject", ("raw.subjects", "staging.stg_row_failures")),
    Model("staging", "stg_trial__randomisation", ("raw.randomisation", "staging.stg_row_failures")),
    Model("core", "subject", ("staging.stg_trial__subject", "staging.stg_trial__randomisation", "ref.study_definition")),
    Model("core", "visit", ("ref.study_definition",)),
    Model("staging", "stg_biobank__sample", ("raw.sample_manifest", "staging.stg_row_failures", "core.subject")),
    Model("core", "sample", ("staging.stg_biobank__sample", "core.subject")),
    Model("staging", "stg_lab__treg", ("raw.treg", "staging.stg_row_failures", "staging.stg_biobank__sample")),
    Model("staging", "stg_lab__neurofilament", ("raw.neurofilament", "staging.stg_row_failures", "staging.stg_biobank__sample")),
    Model("staging", "stg_lab__transcript_summary", ("raw.transcript_summary", "staging.stg_row_failures", "staging.stg_biobank__sample")),
    # The gene table (~20,000 rows per sample) is stored once, in raw: small incremental tables
    # hold its row-level verdicts, and staging and core read it through views.
    Model("staging", "int_transcript_gene__samples", ("raw.transcript_gene",),
          materialized="incremental", family="transcript_gene"),
    Model("staging", "int_transcript_gene__copies", ("raw.transcript_gene",),
          materialized="incremental", family="transcript_gene"),
    Model("staging", "int_transcript_gene__row_verdicts", ("staging.stg_row_failures",
          "staging.int_transcript_gene__copies"), materialized="view"),
    Model("staging", "int_transcript_gene__delivered_symbols", ("raw.transcript_gene",
          "staging.int_transcript_gene__row_verdicts"), materialized="incremental", family="transcript_gene"),
    Model("staging", "int_transcript_gene__symbols", ("staging.int_transcript_gene__delivered_symbols",)),
    Model("staging", "int_transcript_gene__latest", ("raw.transcript_gene",
          "staging.int_transcript_gene__samples", "staging.int_transcript_gene__row_verdicts"),
          materialized="incremental", family="transcript_gene", unique_key="sample_id"),
    Model("staging", "int_transcript_gene__sample_verdicts", ("raw.transcript_gene",
          "staging.int_transcript_gene__samples", "staging.int_transcript_gene__row_verdicts",
          "staging.stg_biobank__sample")),
    Model("staging", "stg_lab__transcript_gene", ("raw.transcript_gene", "staging.int_transcript_gene__row_verdicts",
          "staging.int_transcript_gene__latest", "staging.int_transcript_gene__sample_verdicts"),
          materialized="view"),
    Model("core", "treg", ("staging.stg_lab__treg", "core.sample")),
    Model("core", "neurofilament", ("staging.stg_lab__neurofilament", "core.sample")),
    Model("core", "transcript_summary", ("staging.stg_lab__transcript_summary", "core.sample")),
    Model("core", "transcript_gene", ("staging.stg_lab__transcript_gene", "core.sample"), materialized="view",
          linked_by_sample=True),
    Model("staging", "int_biomarker__values", ("core.treg", "core.neurofilament", "core.transcript_summary"),
          materialized="view"),
    Model("analysis", "adgene", ("analysis.adgene_samples", "core.transcript_gene",
          "staging.int_transcript_gene__symbols"), materialized="view"),
    # BASE is a window over each subject's rows of a gene: its first rows sort the whole gene table
    Model("analysis", "adgene_change", ("analysis.adgene",), materialized="view", previewed=False),
    # Views: they list held-back and corrected gene rows with their delivered values, which a
    # table would copy again at every build, more of them as deliveries pile up; a query reads
    # only the gene rows that the small verdict tables name.
    Model("quarantine", "rejected_rows", tuple(f"staging.{m}" for m in (
        "stg_trial__subject", "stg_trial__randomisation", "stg_biobank__sample", "stg_lab__treg",
        "stg_lab__neurofilament", "stg_lab__transcript_summary", "int_transcript_gene__row_verdicts",
        "int_transcript_gene__sample_verdicts")) + ("raw.transcript_gene",), materialized="view", counted=True),
    Model("quarantine", "rejected_files", RAW),
    Model("audit", "reconciliation", ("quarantine.rejected_rows", "quarantine.rejected_files",
          "staging.int_transcript_gene__latest", "staging.int_transcript_gene__sample_verdicts")),
    Model("audit", "correction", tuple(f"staging.{m}" for m in (
        "stg_trial__subject", "stg_biobank__sample", "stg_lab__treg", "stg_lab__neurofilament",
        "stg_lab__transcript_summary", "int_transcript_gene__latest", "int_transcript_gene__sample_verdicts"))
          + ("ref.study_definition",), materialized="view",
          # a corrected gene sample lists every gene: the view's first rows would compute all of
          # them, more at each build as corrections pile up (1.1 s after 30 corrected samples)
          preview_leaves_out=("family <> 'transcript_gene'", "gene rows")),
    Model("audit", "held_back_correction", tuple(f"staging.{m}" for m in (
        "stg_lab__treg", "stg_lab__neurofilament", "stg_lab__transcript_summary",
        "int_transcript_gene__row_verdicts")) + ("core.transcript_gene",), materialized="view", previewed=False),
)

# The staging model that judges each delivery family's rows (qc_rule, qc_reason, is_current).
STAGING_MODEL = {
    "subjects": "staging.stg_trial__subject",
    "randomisation": "staging.stg_trial__randomisation",
    "sample_manifest": "staging.stg_biobank__sample",
    "treg": "staging.stg_lab__treg",
    "neurofilament": "staging.stg_lab__neurofilament",
    "transcript_summary": "staging.stg_lab__transcript_summary",
    "transcript_gene": "staging.stg_lab__transcript_gene",
}


def upstream_models(key: str, provided: tuple[str, ...] = ()) -> list[Model]:
    """The models that ``key`` is built from, itself included, in build order; the tables in
    ``provided`` are taken as they are."""
    by_key = {m.key: m for m in MODELS}
    needed: set[str] = set()
    stack = [key]
    while stack:
        current = stack.pop()
        if current in by_key and current not in needed and current not in provided:
            needed.add(current)
            stack.extend(by_key[current].deps)
    return [m for m in MODELS if m.key in needed]


def run(con, model: Model) -> int | None:
    """Build one model as it is materialised; returns its row count."""
    if model.materialized == "incremental":
        return run_incremental_model(con, model.layer, model.name, model.family, model.unique_key)
    return run_model(con, model.layer, model.name, view=model.view)


BIOMARKER_TABLES = ("core.treg", "core.neurofilament", "core.transcript_summary", "core.transcript_gene")


def _description(model: Model) -> str:
    doc = table_docs().get(model.key)
    if doc:
        return doc["description"]
    first_comment = next(line for line in model_sql(model.layer, model.name).splitlines() if line.startswith("--"))
    return first_comment.lstrip("- ").strip()


def _metadata(con, model: Model, rows: int | None) -> dict:
    if not model.previewed:
        return {"preview": dg.MetadataValue.md(f"Not previewed at each build: query `{model.key}`.")}
    # sorting a view over the gene table would read all of it
    where, left_out = model.preview_leaves_out or ("true", None)
    metadata: dict = {"preview": table_preview(con, model.key, newest_first=not model.view or model.counted, where=where)}
    if left_out:
        metadata["preview_leaves_out"] = dg.MetadataValue.md(f"{left_out}: query `{model.key}` for them")
    if model.view and not model.counted:
        return metadata  # counting the gene views would read the whole gene table, audit.correction costs a query
    if rows is None:
        rows = con.execute(f"select count(*) from {model.key}").fetchone()[0]
    metadata["rows"] = dg.MetadataValue.int(rows)
    if model.key in STAGING_MODEL.values():
        held = con.execute(f"select count(*) from {model.key} where qc_rule is not null").fetchone()[0]
        metadata["rows_quarantined"] = dg.MetadataValue.int(held)
    if model.key in BIOMARKER_TABLES:
        metadata["subjects"] = dg.MetadataValue.int(
            con.execute(f"select count(distinct usubjid) from {model.key}").fetchone()[0]
        )
    return metadata


UNLINKED = """
    left join core.subject as subject using (usubjid)
    left join core.visit as visit using (visit_code)
    where subject.usubjid is null or visit.visit_code is null or fact.study_day is null
       or (subject.randomised and fact.armcd is null)
"""


def _linkage_check(con, model: Model) -> dg.AssetCheckResult:
    """Every biomarker row has subject, arm (if randomised), visit and study day, and joins."""
    if model.linked_by_sample:
        # Judged on core.sample, then only the rows of unlinked samples are counted: the same
        # answer as judging every row, without reading the whole gene table.
        samples = [s for s, in con.execute(f"select sample_id from core.sample as fact {UNLINKED}").fetchall()]
        unlinked = con.execute(
            f"select count(*) from {model.key} where sample_id in (select unnest(?::varchar[]))", [samples]
        ).fetchone()[0] if samples else 0
    else:
        unlinked = con.execute(f"select count(*) from {model.key} as fact {UNLINKED}").fetchone()[0]
    return dg.AssetCheckResult(
        check_name="linked_to_subject_arm_and_visit",
        passed=unlinked == 0,
        metadata={"unlinked_rows": dg.MetadataValue.int(unlinked)},
    )


def _balance_check(con) -> dg.AssetCheckResult:
    unbalanced = con.execute(
        "select file_name, rows_delivered, rows_loaded, rows_quarantined from audit.reconciliation "
        "where balanced = false"
    ).fetchall()
    return dg.AssetCheckResult(
        check_name="every_delivery_balances",
        passed=not unbalanced,
        metadata={
            "unbalanced_deliveries": dg.MetadataValue.int(len(unbalanced)),
            "detail": dg.MetadataValue.md("\n".join(f"- {row}" for row in unbalanced) or "all balanced"),
        },
    )


def build_model_asset(model: Model) -> dg.AssetsDefinition:
    """The asset that builds one SQL model."""
    key = dg.AssetKey([model.layer, model.name])
    checks = []
    if model.key in BIOMARKER_TABLES:
        checks.append(dg.AssetCheckSpec("linked_to_subject_arm_and_visit", asset=key, blocking=True,
                                        description="Every row joins to core.subject and core.visit and has a study day."))
    if model.key == "audit.reconciliation":
        checks.append(dg.AssetCheckSpec("every_delivery_balances", asset=key, blocking=True,
                                        description="rows_delivered = rows_loaded + rows_quarantined for every delivery."))

    @dg.asset(
        key=key,
        group_name=model.layer,
        kinds={"duckdb", "sql"},
        deps=[dg.AssetKey(dep.split(".")) for dep in model.deps],
        description=f"{_description(model)}\n\nBuilt from `warehouse/models/{model.layer}/{model.name}.sql`.",
        check_specs=checks,
    )
    def _model(warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            rows = run(con, model)
            results = []
            if model.key in BIOMARKER_TABLES:
                results.append(_linkage_check(con, model))
            if model.key == "audit.reconciliation":
                results.append(_balance_check(con))
            metadata = _metadata(con, model, rows)
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return _model


model_assets = [build_model_asset(model) for model in MODELS]
