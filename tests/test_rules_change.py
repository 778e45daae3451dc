"""When a rule changes (a suite, or a study value it names such as a plausible range), the next
build judges the earlier deliveries again from their files: a stricter rule holds back rows it
had loaded, a looser one releases them, every judgment stays in the audit, and a delivery whose
file has left the landing zone keeps its verdicts with a warning. Real builds, real GX."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest

import pipelines.ingest.delivery as delivery
from pipelines.ingest.expectations import suite_parameters
from tests.conftest import Built, run_build
from tests.landing import treg, write_delivery, write_reference
from tests.test_gene_table import _current, gene_landing  # noqa: F401  (a fixture)

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
        "deliveries_judged_again": 0, "judged_again": "none",
        "deliveries_judged_by_other_rules": 0, "judged_by_other_rules": "none"})

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
    assert f"| labs/treg/treg_batch01.parquet | {treg_delivery} | 0 | 1 |" in metadata["judged_again"]
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


def test_a_delivery_whose_file_left_the_landing_zone_keeps_its_verdicts(treg_landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build(treg_landing, warehouse)
    (treg_landing / "labs" / "treg" / "treg_batch01.parquet").unlink()
    _rules(monkeypatch, CD4CNT_lo=400)
    built = _build(treg_landing, warehouse)
    assert _held_back(built) == {}
    assert built.scalar("select count(*) from core.treg where sample_id = 'S002'") > 0
    passed, metadata = _rules_check(built, "treg")
    assert not passed and metadata["deliveries_judged_by_other_rules"] == 1
    treg_delivery = built.scalar("select delivery_id from audit.delivery where family = 'treg'")
    assert metadata["judged_by_other_rules"] == (
        f"- labs/treg/treg_batch01.parquet (delivery {treg_delivery}) keeps the verdicts of the rules it was "
        "judged by: the file is no longer in the landing zone")
    assert "raw/treg:judged_by_current_rules" in built.result.failed_checks
    # the other families were judged by rules that did not change
    assert _rules_check(built, "subjects")[0]


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
