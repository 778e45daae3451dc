"""The real asset graph on a generated MIROCALS landing zone at trial size (few genes):
linkage to arm and visit, reconciliation, and what became of every injected fault."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

import pytest

from pipelines.warehouse import table_docs
from tests.conftest import TRIAL_GENES as GENES

BIOMARKER_TABLES = ("core.treg", "core.neurofilament", "core.transcript_summary", "core.transcript_gene")


def test_subjects_randomised_and_arms(trial, unblinded_trial):
    report, built = trial
    assert built.scalar("select count(*) from core.subject") == report.n_entered == 304
    assert built.scalar("select count(*) from core.subject where randomised") == report.n_randomised == 220
    masked = dict(built.rows("select armcd, count(*) from core.subject where randomised group by armcd"))
    assert set(masked) == {"A", "B"} and sum(masked.values()) == 220
    assert built.scalar("select count(*) from core.subject where not randomised and armcd is not null") == 0
    _, unblinded = unblinded_trial
    arms = dict(unblinded.rows("select armcd, count(*) from core.subject where randomised group by armcd"))
    assert arms == {"IL2": 110, "PBO": 110}


@pytest.mark.parametrize("table", BIOMARKER_TABLES)
def test_every_biomarker_row_is_linked_to_subject_arm_and_visit(trial, table):
    _, built = trial
    total = built.scalar(f"select count(*) from {table}")
    assert total > 0
    assert built.scalar(
        f"select count(*) from {table} where usubjid is null or visit_code is null or study_day is null or armcd is null"
    ) == 0
    joined = built.scalar(
        f"select count(*) from {table} t join core.subject s using (usubjid) join core.visit v using (visit_code)"
    )
    assert joined == total
    # the arm on the fact row is the subject's arm
    assert built.scalar(f"select count(*) from {table} t join core.subject s using (usubjid) where t.armcd <> s.armcd") == 0


@pytest.mark.parametrize("table", BIOMARKER_TABLES)
def test_linkage_check_counts_the_rows_of_a_sample_that_lost_its_link(trial, table, tmp_path):
    """The blocking check fails with the number of rows that lost their subject, visit or study
    day; the gene table's check judges samples, and must give the same count as row by row."""
    from pipelines.assets.models import MODELS, _linkage_check

    _, built = trial
    model = next(m for m in MODELS if m.key == table)
    copy = tmp_path / "mirocals.duckdb"
    shutil.copyfile(built.warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        assert _linkage_check(con, model).passed
        sample_ids = [s for s, in con.execute(f"select distinct sample_id from {table} order by 1 limit 2").fetchall()]
        # one sample loses its study day, another its visit
        con.execute("update core.sample set study_day = null where sample_id = ?", [sample_ids[0]])
        con.execute("update core.sample set visit_code = 'V99' where sample_id = ?", [sample_ids[1]])
        if not model.view:  # a table keeps its copy of the sample's link: break the rows themselves
            con.execute(f"update {table} set study_day = null where sample_id = ?", [sample_ids[0]])
            con.execute(f"update {table} set visit_code = 'V99' where sample_id = ?", [sample_ids[1]])
        expected = con.execute(f"select count(*) from {table} where sample_id in (?, ?)", sample_ids).fetchone()[0]
        result = _linkage_check(con, model)
    finally:
        con.close()
    assert expected > 0
    assert not result.passed
    assert result.metadata["unlinked_rows"].value == expected


def test_gene_table_has_every_gene_of_every_valid_rna_sample(trial):
    _, built = trial
    samples = built.scalar("select count(*) from core.sample where matrix = 'PAXGENE_RNA'"
                           " and sample_id in (select sample_id from core.transcript_summary)")
    assert built.scalar("select count(*) from core.transcript_gene") == samples * GENES


def test_every_delivery_balances(trial):
    _, built = trial
    rows = built.dicts("select * from audit.reconciliation")
    assert rows and all(r["balanced"] for r in rows)
    for r in rows:
        assert r["rows_delivered"] == r["rows_loaded"] + r["rows_quarantined"]
    raw_total = sum(built.scalar(f"select count(*) from raw.{family}") for family in
                    ("subjects", "sample_manifest", "randomisation", "treg", "neurofilament",
                     "transcript_gene", "transcript_summary"))
    assert raw_total == sum(r["rows_delivered"] for r in rows)
    quarantined = built.scalar("select count(*) from quarantine.rejected_rows")
    assert quarantined == sum(r["rows_quarantined"] for r in rows)


EXPECTED_RULE = {
    "duplicate_row": "duplicate_row",
    "unknown_sample": "sample_unknown",
    "out_of_window": "collection_out_of_window",
    "not_randomised": "subject_not_randomised",
}


def test_every_injected_fault_is_harmonised_quarantined_or_rejected(trial):
    report, built = trial
    kinds = {fault.kind for fault in report.faults}
    assert {"duplicate_row", "unit_spelling", "below_lloq", "unknown_sample", "out_of_window",
            "not_randomised", "correction"} <= kinds
    held = built.dicts("select family, file_name, row_number, rule, reason, delivered_row from quarantine.rejected_rows")
    for fault in report.faults:
        if fault.kind in ("duplicate_row", "unknown_sample"):
            match = [h for h in held if h["file_name"] == fault.file and h["row_number"] == fault.row_number]
            assert [h["rule"] for h in match] == [EXPECTED_RULE[fault.kind]], fault
            assert fault.sample_id in match[0]["reason"] or fault.kind == "duplicate_row"
        elif fault.kind in ("out_of_window", "not_randomised"):
            # the manifest row and every lab result on that sample are held back, with the reason
            match = [h for h in held if json.loads(h["delivered_row"]).get("sample_id") == fault.sample_id]
            assert {h["family"] for h in match} >= {"sample_manifest"}, fault
            assert {h["rule"] for h in match} == {EXPECTED_RULE[fault.kind]}, fault
        elif fault.kind == "unit_spelling":
            paramcd = fault.detail.split()[0]
            row = built.dicts("select aval, reported_result, reported_unit from core.neurofilament "
                              "where sample_id = ? and paramcd = ?", [fault.sample_id, paramcd])
            assert len(row) == 1 and row[0]["reported_unit"] in ("ng/L", "ng/mL"), fault
            factor = 1000.0 if row[0]["reported_unit"] == "ng/mL" else 1.0
            assert row[0]["aval"] == pytest.approx(float(row[0]["reported_result"]) * factor)
        elif fault.kind == "below_lloq":
            row = built.dicts("select aval, blq_flag from core.neurofilament n join raw.neurofilament r "
                              "using (delivery_id, row_number) where r.file_name = ? and r.row_number = ?",
                              [fault.file, fault.row_number])
            superseded = built.scalar("select count(*) from staging.stg_lab__neurofilament where file_name = ? "
                                      "and row_number = ? and not is_current", [fault.file, fault.row_number])
            assert superseded == 1 or row == [{"aval": None, "blq_flag": True}], fault
        elif fault.kind == "correction":
            current = built.dicts("select file_name, reported_result from core.neurofilament n "
                                  "where sample_id = ? and file_name = ?", [fault.sample_id, fault.file])
            assert len(current) == 1, fault


def test_corrections_supersede_earlier_values(trial):
    report, built = trial
    corrected_batches = {f.detail.split()[1] for f in report.faults if f.kind == "correction"}
    corrections = sum(1 for f in report.faults if f.kind == "correction")
    superseded = built.scalar("select sum(rows_superseded) from audit.reconciliation where file_name in "
                              f"({', '.join('?' for _ in corrected_batches)})", list(corrected_batches))
    assert superseded == corrections


def test_published_tables_and_columns_carry_comments_and_no_other_column_is_documented(trial):
    _, built = trial
    for key, doc in table_docs().items():
        schema, table = key.split(".")
        columns = built.rows("select column_name, comment from duckdb_columns() where schema_name = ? and table_name = ?",
                             [schema, table])
        assert columns, f"{key} is documented but not built"
        undocumented = [name for name, comment in columns if not comment]
        assert undocumented == [], f"{key}: columns without a description: {undocumented}"
        phantom = sorted(set(doc.get("columns", {})) - {name for name, _ in columns})
        assert phantom == [], f"{key}: documented columns the table does not have: {phantom}"
        assert built.scalar("select comment from duckdb_tables() where schema_name = ? and table_name = ? "
                            "union all select comment from duckdb_views() where schema_name = ? and view_name = ?",
                            [schema, table, schema, table])


def test_checks_that_must_stop_publishing_are_blocking():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    blocking = {
        (key.asset_key.to_user_string(), key.name)
        for key in graph.asset_check_keys
        if graph.get_check_spec(key).blocking
    }
    assert ("audit/reconciliation", "every_delivery_balances") in blocking
    for table in BIOMARKER_TABLES:
        assert (table.replace(".", "/"), "linked_to_subject_arm_and_visit") in blocking
    # the publish asset is downstream of both, so a failing blocking check stops publishing
    publish = graph.get(dg.AssetKey(["publish", "warehouse"]))
    assert {dg.AssetKey(["audit", "reconciliation"]), dg.AssetKey(["core", "treg"])} <= publish.parent_keys


def test_every_table_and_view_opens_in_the_analysts_duckdb_shell(trial):
    """The warehouse is written for DuckDB 1.x clients (the duckdb-cli shell, R): every table
    and view must be readable there, also views whose SQL uses a function 1.x does not know."""
    _, built = trial
    shell = Path(sys.executable).parent / "duckdb"
    objects = built.rows(
        "select schema_name || '.' || table_name from duckdb_tables() where database_name = current_database() "
        "union all select schema_name || '.' || view_name from duckdb_views() "
        "where database_name = current_database() and not internal order by 1"
    )
    assert len(objects) > 30
    version = subprocess.run([str(shell), "-version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1."), version
    failures = {}
    for (name,) in objects:
        result = subprocess.run([str(shell), "-readonly", str(built.warehouse), "-c", f"select count(*) from {name}"],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or "Error" in result.stderr:
            failures[name] = result.stderr.strip()[:200]
    assert failures == {}


def test_a_preview_shows_the_newest_deliveries_first_and_a_refusal_reason_whole():
    from pipelines.assets.metadata import table_preview

    con = duckdb.connect()
    reason = "labs/neurofilament/neurofilament_batch06_renamed.parquet: required column(s) 'result' missing"
    con.execute("create table refused as select range as delivery_id, ? as reason from range(1, 11)", [reason])
    rows = table_preview(con, "refused", newest_first=True).value.splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["10", "9", "8", "7", "6"]
    assert "batch06_renamed.parquet: required column(s)" in rows[0]
    oldest = table_preview(con, "refused").value.splitlines()[2:]
    assert len(oldest) == 5 and "10" not in [row.split("|")[1].strip() for row in oldest]


def test_a_preview_looks_in_the_newest_deliveries_first_and_orders_as_the_whole_table():
    from pipelines.assets.metadata import NEWEST_DELIVERY_WINDOW, table_preview

    con = duckdb.connect()
    con.execute("create schema audit")
    registered = 4 * NEWEST_DELIVERY_WINDOW
    con.execute(f"create table audit.delivery as select range as delivery_id from range(1, {registered + 1})")
    # the newest window holds one row: the next, wider window finds the rest
    con.execute(f"""create table held as
        select d as delivery_id, r as row_number from range(1, 21) as t(d), range(3) as u(r)
        union all select {registered - 1}, 0
        union all select null, 0""")
    def ids(preview):
        return [row.split("|")[1].strip() for row in preview.value.splitlines()[2:]]

    whole = con.execute("select delivery_id from held order by delivery_id desc nulls last limit 5").fetchall()
    assert ids(table_preview(con, "held", newest_first=True)) == [str(i) for i, in whole]
    assert ids(table_preview(con, "held", newest_first=True))[:2] == [str(registered - 1), "20"]
    # fewer rows than a preview in every window: the whole table's order, nulls last
    con.execute("delete from held where delivery_id < 20")
    assert ids(table_preview(con, "held", newest_first=True)) == [str(registered - 1), "20", "20", "20", ""]


def test_a_run_that_leaves_tables_unbuilt_publishes_nothing(tmp_path):
    """A run selected by hand in the UI (raw/treg and publish), or publish alone after a run
    stopped once it had taken files in: the published warehouse stays as it was."""
    from pipelines.definitions import BUILD_JOB, build_definitions
    from tests.conftest import run_build
    from tests.landing import treg, write_delivery, write_reference

    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "mirocals.duckdb"
    write_reference(landing)
    run_build(landing, warehouse)
    published = warehouse.read_bytes()
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003")])
    job = build_definitions(str(landing), str(warehouse)).resolve_job_def(BUILD_JOB)
    instance = dg.DagsterInstance.ephemeral()

    def run(*keys: str):
        result = job.execute_in_process(instance=instance, raise_on_error=False,
                                        asset_selection=[dg.AssetKey(key.split("/")) for key in keys])
        (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        return failure.step_failure_data.user_failure_data.description

    message = run("raw/treg", "publish/warehouse")
    assert message.startswith("Not published: this run does not rebuild ") and "core/treg" in message
    assert warehouse.read_bytes() == published
    # the raw rows were taken in by that run; publishing alone would show them without tables
    assert run("publish/warehouse") == ("Not published: 1 deliveries were taken in after the tables were built "
                                        "(labs/treg/treg_batch01.parquet); run the whole build_warehouse job.")
    assert warehouse.read_bytes() == published
    built = run_build(landing, warehouse)
    assert built.scalar("select count(*) from core.treg where paramcd = 'CD4CNT'") == 2
