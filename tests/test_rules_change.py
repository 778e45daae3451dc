"""When a rule changes (a suite, or a study value it names such as a plausible range), the next
build judges the earlier deliveries again from their files: a stricter rule holds back rows it
had loaded, a looser one releases them, every judgment stays in the audit, and a delivery whose file has
left the landing zone is judged from the rows the warehouse keeps (in a blinded build its
withheld values keep their verdicts, with a warning). Real builds, real GX."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import duckdb
import pytest
import yaml

import pipelines.assets.models as models
import pipelines.blinding as blinding
import pipelines.ingest.delivery as delivery
import pipelines.study as study
from pipelines.build import build_warehouse
from pipelines.ingest.expectations import suite_parameters
from pipelines.warehouse import work_file
from tests.conftest import Built, run_build
from tests.landing import treg, write_delivery, write_reference
from tests.stored_text import columns_containing, warehouse_text
from tests.test_gene_table import GENE_MANIFEST, _current, _gene_rows, gene_landing  # noqa: F401  (a fixture)

RULES_CHECK = "judged_by_current_rules"


def _rules(monkeypatch: pytest.MonkeyPatch, **changed) -> None:
    """Builds from here on judge with these study values changed."""
    monkeypatch.setattr(delivery, "suite_parameters", lambda blinding=None: {**suite_parameters(blinding), **changed})


def _rules_check(built: Built, family: str) -> tuple[bool, dict]:
    (evaluation,) = [
        event.event_specific_data
        for event in built.result_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and event.event_specific_data.asset_key == dg.AssetKey(["raw", family])
        and event.event_specific_data.check_name == RULES_CHECK
    ]
    return evaluation.passed, {key: value.value for key, value in evaluation.metadata.items()}


def _build(landing: Path, warehouse: Path) -> Built:
    built = run_build(landing, warehouse)
    built.result_events = [
        record.event_log_entry.dagster_event
        for record in built.instance.get_records_for_run(
            built.result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    ]
    return built


def _held_back(built: Built) -> dict[str, str]:
    return dict(built.rows("select sample_id, qc_reason from staging.stg_lab__treg where qc_rule is not null"))


def _balanced(built: Built) -> bool:
    return built.scalar("select bool_and(balanced) from audit.reconciliation")


@pytest.fixture
def treg_landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=300.0), treg("S003", cd4=800.0)])
    return landing


def test_a_stricter_then_looser_rule_judges_earlier_deliveries_again(treg_landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    first = _build(treg_landing, warehouse)
    assert _held_back(first) == {}
    assert _rules_check(first, "treg") == (True, {
        "deliveries_judged_again": 0, "judged_again": "none", "withheld_values_not_judged_again": "none"})

    # the plausible floor of the CD4 count is raised above S002's value
    _rules(monkeypatch, CD4CNT_lo=400)
    stricter = _build(treg_landing, warehouse)
    held = _held_back(stricter)
    assert list(held) == ["S002"]
    assert "cd4_count must lie in the plausible range (cells/uL): 400 to 5000 (delivered: 300.0)" in held["S002"]
    assert [sample for sample, in stricter.rows(
        "select sample_id from core.treg where paramcd = 'CD4CNT' order by 1")] == ["S003"]
    assert _balanced(stricter)
    passed, metadata = _rules_check(stricter, "treg")
    assert passed and metadata["deliveries_judged_again"] == 1
    treg_delivery = stricter.scalar("select delivery_id from audit.delivery where family = 'treg'")
    assert f"| labs/treg/treg_batch01.parquet | {treg_delivery} | file | 0 | 1 |" in metadata["judged_again"]
    # both judgments are kept, each with its rules' version; staging reads the newest
    judgments = stricter.rows(
        "select validated_at, any_value(rules_sha256), bool_and(success) from audit.validation "
        "where suite = 'treg' group by validated_at order by validated_at")
    assert len(judgments) == 2 and judgments[0][1] != judgments[1][1]
    assert [ok for *_, ok in judgments] == [True, False]
    assert stricter.rows("select row_number, validated_at from audit.row_failure") == [(1, judgments[1][0])]
    # the new judgment has its Data Docs page, linked from the raw asset
    pages = stricter.instance.get_latest_materialization_event(
        dg.AssetKey(["raw", "treg"])).asset_materialization.metadata["validation_pages"].value
    (link,) = re.findall(r"- \[labs/treg/treg_batch01.parquet, judged again\]\((file://[^)]+)\)", pages)
    assert "400" in Path(urlparse(link).path).read_text(encoding="utf-8")

    # nothing changed since: nothing is judged again
    again = _build(treg_landing, warehouse)
    assert _rules_check(again, "treg")[1]["deliveries_judged_again"] == 0
    assert list(_held_back(again)) == ["S002"]

    # the floor back where it was: S002 loads again
    monkeypatch.undo()
    looser = _build(treg_landing, warehouse)
    assert _held_back(looser) == {}
    assert looser.scalar("select aval from core.treg where sample_id = 'S002' and paramcd = 'CD4CNT'") == 300.0
    assert _rules_check(looser, "treg")[1]["deliveries_judged_again"] == 1
    assert looser.scalar("select count(distinct validated_at) from audit.validation where suite = 'treg'") == 3
    assert _balanced(looser)


def test_a_delivery_whose_file_left_the_landing_zone_is_judged_from_the_warehouse(treg_landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build(treg_landing, warehouse)
    (treg_landing / "labs" / "treg" / "treg_batch01.parquet").unlink()
    _rules(monkeypatch, CD4CNT_lo=400)
    built = _build(treg_landing, warehouse)
    # the CD4 count is judged again from the raw rows the warehouse keeps
    assert list(_held_back(built)) == ["S002"]
    assert _balanced(built)
    treg_delivery = built.scalar("select delivery_id from audit.delivery where family = 'treg'")
    passed, metadata = _rules_check(built, "treg")
    assert f"| labs/treg/treg_batch01.parquet | {treg_delivery} | warehouse copy | 0 | 1 |" in metadata["judged_again"]
    # the blinded build withheld the Treg count and %Treg: those values cannot be judged again,
    # they keep their verdicts, and the check says so
    assert not passed and "raw/treg:judged_by_current_rules" in built.result.failed_checks
    assert metadata["withheld_values_not_judged_again"] == (
        f"- labs/treg/treg_batch01.parquet (delivery {treg_delivery}): not in the landing zone as taken in; its "
        "withheld values keep the verdicts of earlier rules until the file is put back")
    outcomes = dict(built.rows(
        "select rule, success from audit.validation where validated_at = (select max(validated_at) from audit.validation "
        "where suite = 'treg') and rule in ('cd4_count_in_range', 'treg_count_in_range', 'treg_count_present')"))
    assert outcomes == {"cd4_count_in_range": False, "treg_count_in_range": True, "treg_count_present": True}
    # the other families were judged by rules that did not change
    assert _rules_check(built, "subjects") == (True, {
        "deliveries_judged_again": 0, "judged_again": "none", "withheld_values_not_judged_again": "none"})


def test_withheld_values_are_judged_again_once_their_file_is_back(treg_landing, tmp_path, monkeypatch):
    """Blinded: the Treg count is withheld, so with its file away it cannot be judged by a new
    ceiling; the check warns at every build until the file is back, and then judges it."""
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build(treg_landing, warehouse)
    delivered = treg_landing / "labs" / "treg" / "treg_batch01.parquet"
    away = tmp_path / "archive" / delivered.name
    away.parent.mkdir()
    delivered.rename(away)
    _rules(monkeypatch, TREGCNT_hi=30)   # S003's Treg count is 40
    for build in range(2):
        waiting = _build(treg_landing, warehouse)
        passed, metadata = _rules_check(waiting, "treg")
        assert not passed and "treg_batch01.parquet" in metadata["withheld_values_not_judged_again"]
        assert metadata["deliveries_judged_again"] == (1 if build == 0 else 0)
        assert _held_back(waiting) == {}
    away.rename(delivered)
    back = _build(treg_landing, warehouse)
    passed, metadata = _rules_check(back, "treg")
    assert passed and "| file |" in metadata["judged_again"]
    assert list(_held_back(back)) == ["S003"]
    assert "treg_count must lie in the plausible range" in _held_back(back)["S003"]


def test_a_moved_file_is_judged_again_from_its_bytes(treg_landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build(treg_landing, warehouse)
    folder = treg_landing / "labs" / "treg"
    (folder / "2019").mkdir()
    (folder / "treg_batch01.parquet").rename(folder / "2019" / "treg_batch01.parquet")
    _build(treg_landing, warehouse)   # the moved file is recorded as a duplicate of the delivery
    _rules(monkeypatch, TREGCNT_hi=30)
    built = _build(treg_landing, warehouse)
    passed, metadata = _rules_check(built, "treg")
    assert passed and "| file |" in metadata["judged_again"]
    assert list(_held_back(built)) == ["S003"]


def test_a_value_corrected_away_does_not_come_back_when_the_correction_is_held_back(treg_landing, tmp_path, monkeypatch):
    """A file corrected under the same name: the earlier bytes are gone from the landing zone,
    and its rows are judged from the warehouse's copy, so a stricter rule holds back the old value
    as well as the correction."""
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build(treg_landing, warehouse)
    write_delivery(treg_landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=310.0), treg("S003", cd4=800.0)])
    corrected = _build(treg_landing, warehouse)
    assert corrected.scalar("select aval from core.treg where sample_id = 'S002' and paramcd = 'CD4CNT'") == 310.0
    _rules(monkeypatch, CD4CNT_lo=400)
    stricter = _build(treg_landing, warehouse)
    assert stricter.rows("select aval from core.treg where sample_id = 'S002' and paramcd = 'CD4CNT'") == []
    assert _rules_check(stricter, "treg")[1]["deliveries_judged_again"] == 2
    assert _balanced(stricter)


def test_the_newest_judgment_counts_whatever_the_clock_said(treg_landing, tmp_path, monkeypatch):
    """A warehouse whose judgments were stamped ahead of this machine's clock (moved from a host
    whose clock ran fast): a judgment made now still replaces them, once."""
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build(treg_landing, warehouse)
    con = duckdb.connect(str(work_file(warehouse)))
    try:
        for table in ("audit.validation", "audit.row_failure"):
            con.execute(f"update {table} set validated_at = validated_at + interval 1 day")
    finally:
        con.close()
    _rules(monkeypatch, CD4CNT_lo=400)
    stricter = _build(treg_landing, warehouse)
    assert list(_held_back(stricter)) == ["S002"]
    again = _build(treg_landing, warehouse)
    assert _rules_check(again, "treg")[1]["deliveries_judged_again"] == 0
    assert list(_held_back(again)) == ["S002"]


def test_gene_tables_are_rebuilt_after_a_judgment_the_run_stopped_after(tmp_path, monkeypatch):
    """A run stopped after judging gene deliveries again, before their incremental tables ran: the
    next build sees that the tables took the deliveries in under earlier judgments and rebuilds
    them, so a corrected value the new rule holds back gives way to the earlier valid one."""
    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "m.duckdb"
    write_reference(landing, samples=GENE_MANIFEST)
    write_delivery(landing, "transcript_gene", "tg_batch01.parquet", _gene_rows("R001") + _gene_rows("R002"))
    _build(landing, warehouse)
    write_delivery(landing, "transcript_gene", "tg_batch02_corrected.parquet", _gene_rows("R001", shift=0.5))
    _build(landing, warehouse)
    _rules(monkeypatch, expression_hi=7.2)

    def stopped(*args, **kwargs):
        raise RuntimeError("run stopped")

    with monkeypatch.context() as stopping:
        stopping.setattr(models, "run_incremental_model", stopped)
        failed = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
        assert not failed.success and any("run stopped" in error for error in failed.errors)
    built = _build(landing, warehouse)
    assert _rules_check(built, "transcript_gene")[1]["deliveries_judged_again"] == 0   # judged in the stopped run
    fresh = _build(landing, tmp_path / "fresh" / "m.duckdb")
    assert _current(built) == _current(fresh)


def test_gene_rows_judged_again_leave_the_gene_tables(gene_landing, tmp_path, monkeypatch):  # noqa: F811
    warehouse = tmp_path / "wh" / "m.duckdb"
    first = _build(gene_landing, warehouse)
    before = _current(first)
    assert before[("R001", "CD4")] == 5.0

    # an expression ceiling between values of the delivery: the rows above it are held back, and
    # the incremental gene tables that had taken the delivery in are rebuilt
    _rules(monkeypatch, expression_hi=6.5)
    stricter = _build(gene_landing, warehouse)
    after = _current(stricter)
    held = set(before) - set(after)
    # every value above the ceiling, and the withheld (treatment-revealing) values, which GX
    # judges as delivered: they are above it too
    assert {key for key, value in before.items() if value is not None and value > 6.5} <= held
    assert all(before[key] is None or before[key] > 6.5 for key in held)
    assert after == {key: before[key] for key in after} and ("R001", "CD4") in after
    assert stricter.scalar(
        "select count(*) from quarantine.rejected_rows where family = 'transcript_gene' "
        "and reason like '%expression must lie in the plausible range (log2 CPM): % to 6.5%'") >= len(held)
    assert _balanced(stricter)
    assert _rules_check(stricter, "transcript_gene")[1]["deliveries_judged_again"] == 1


# --- what a blinded build withholds is a rule too --------------------------------------------


@pytest.fixture
def change_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Builds from here on read a study definition edited by ``edit(document)`` (the parsed
    ``schemas/study.yaml``), as after a change committed to it."""
    schemas = tmp_path / "changed_schemas"

    def reload() -> None:
        study.load_study.cache_clear()
        blinding._revealing_gene_terms.cache_clear()

    def change(edit) -> None:
        if not schemas.exists():
            shutil.copytree(study.SCHEMAS_DIR, schemas)
        document = yaml.safe_load((schemas / "study.yaml").read_text(encoding="utf-8"))
        edit(document)
        (schemas / "study.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        monkeypatch.setattr(study, "SCHEMAS_DIR", schemas)
        reload()

    yield change
    monkeypatch.undo()
    reload()


def _mark_revealing(paramcd: str):
    def edit(document: dict) -> None:
        (parameter,) = [p for p in document["parameters"] if p["paramcd"] == paramcd]
        parameter["treatment_revealing"] = True
    return edit


def _stored_outside_the_warehouse(warehouse: Path) -> str:
    """The Data Docs pages and the Great Expectations results they are rendered from."""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace")
                     for path in warehouse.parent.rglob("*") if path.is_file() and path.suffix in (".html", ".json"))


def test_a_column_marked_treatment_revealing_later_is_withheld_from_what_was_stored(tmp_path, change_study):
    """Blinded: CD4 counts were not withheld when the delivery was taken in. Once the study
    definition marks them treatment-revealing, the next build withholds them from the stored rows,
    from the reasons and examples of earlier judgments and from their Data Docs pages, and judges
    the delivery again; nothing else is judged again, then or at the next build."""
    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "mirocals.duckdb"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=13.37), treg("S003", cd4=801.7)])
    first = _build(landing, warehouse)
    # stored, and quoted by the failure of the plausible range (13.37 < 50) and its page
    for value in ("13.37", "801.7"):
        assert columns_containing(warehouse_text(warehouse), value), value
    assert "13.37" in first.scalar("select reason from audit.row_failure where column_name = 'cd4_count'")
    assert "13.37" in _stored_outside_the_warehouse(warehouse)
    assert b"(delivered: 13.37)" in warehouse.read_bytes()  # the failure's reason, as DuckDB stores it

    change_study(_mark_revealing("CD4CNT"))
    changed = _build(landing, warehouse)
    for path in (warehouse, work_file(warehouse)):
        text = warehouse_text(path)
        assert columns_containing(text, "13.37") == [] and columns_containing(text, "801.7") == [], path
        # nor in the blocks the updates freed: the file was written anew before it was published
        assert b"13.37" not in path.read_bytes(), f"{path} still holds 13.37"
    assert changed.rows("select family, values_withheld > 0, rewritten_at is not null from audit.withholding") == [
        ("treg", True, True)]
    assert "13.37" not in _stored_outside_the_warehouse(warehouse)
    assert changed.scalar("select count(cd4_count) from raw.treg") == 0
    # both judgments hold the failure, neither its value
    assert changed.rows("select distinct reason from audit.row_failure where column_name = 'cd4_count'") == [
        ("cd4_count must lie in the plausible range (cells/uL): 50 to 5000 (delivered: withheld (blinded build))",)]
    assert _rules_check(changed, "treg")[1]["deliveries_judged_again"] == 1
    assert _rules_check(changed, "subjects")[1]["deliveries_judged_again"] == 0
    assert _balanced(changed)
    again = _build(landing, warehouse)
    assert _rules_check(again, "treg")[1]["deliveries_judged_again"] == 0
    assert again.scalar("select count(*) from audit.withholding") == 1  # nothing more withheld, not written anew


def test_a_gene_added_to_the_treatment_revealing_genes_is_withheld_from_what_was_stored(  # noqa: F811
        gene_landing, tmp_path, change_study):
    warehouse = tmp_path / "wh" / "m.duckdb"
    first = _build(gene_landing, warehouse)
    assert first.scalar("select count(expression) from raw.transcript_gene where gene_symbol = 'GAPDH'") == 5
    assert first.scalar("select count(expression) from raw.transcript_gene where gene_symbol = 'FOXP3'") == 0

    change_study(lambda document: document["blinding"]["treatment_revealing_genes"].append(
        {"symbol": "GAPDH", "gene_id": "ENSG00000111640", "aliases": ["G3PD"], "other_ids": [4141, 2597]}))
    changed = _build(gene_landing, warehouse)
    stored = dict(changed.rows("select gene_symbol, count(expression) from raw.transcript_gene group by all"))
    assert stored == {"CD4": 5, "CD3E": 4, "CD8A": 4, "FOXP3": 0, "GAPDH": 0}
    assert changed.rows("select distinct aval from core.transcript_gene where gene_symbol = 'GAPDH'") == [(None,)]
    assert changed.scalar("select count(aval) from analysis.adgene where GENESYM = 'GAPDH'") == 0
    assert _rules_check(changed, "transcript_gene")[1]["deliveries_judged_again"] == 1
    assert _balanced(changed)
    # a gene delivered afterwards under the alias is withheld at load, as FOXP3 always was
    write_delivery(gene_landing, "transcript_gene", "tg_batch02.parquet", [
        {"sample_id": "R003", "gene_id": None, "gene_symbol": "g3pd", "expression": 9.25}])
    later = _build(gene_landing, warehouse)
    assert columns_containing(warehouse_text(warehouse), "9.25") == []
    assert _rules_check(later, "transcript_gene")[1]["deliveries_judged_again"] == 0


def test_a_blinded_warehouse_from_before_withholdings_were_recorded_is_written_anew_once(tmp_path):
    """An earlier build may have withheld stored values without recording it: the freed blocks
    of its file may hold them. The first build that records withholdings writes it anew."""
    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "mirocals.duckdb"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=13.37), treg("S003", cd4=801.7)])
    _build(landing, warehouse)
    # as an earlier build withholding CD4 counts left it: the quoted values overwritten, no record of it
    with duckdb.connect(str(work_file(warehouse))) as con:
        con.execute("update audit.row_failure set reason = 'withheld' where reason like '%13.37%'")
        con.execute("update audit.validation set examples = '[]' where examples::varchar like '%13.37%'")
        con.execute("drop table audit.withholding")
    assert b"13.37" in work_file(warehouse).read_bytes()  # in the blocks the updates freed

    upgraded = _build(landing, warehouse)
    for path in (warehouse, work_file(warehouse)):
        assert b"13.37" not in path.read_bytes(), f"{path} still holds 13.37"
    assert upgraded.rows("select delivery_id, family, rewritten_at is not null from audit.withholding") == [
        (0, "every family", True)]
    again = _build(landing, warehouse)
    assert again.rows("select * from audit.withholding") == upgraded.rows("select * from audit.withholding")
