"""Subjects and manifest exports are full snapshots: the newest export decides what is current.
A subject or sample it lacks (or holds back) is no longer current, with a record in
audit.correction; an earlier export sent again is taken in as the newest."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.ingest.delivery import discover_files
from pipelines.study import load_contracts
from tests.conftest import run_build
from tests.landing import IL2, PBO, RUNIN_ONLY, nf, sample, subject, treg, write_delivery, write_reference

FIRST_SUBJECTS = "reference/subjects/subjects_export_20190101.parquet"
SECOND_SUBJECTS = "reference/subjects/subjects_export_20190201.parquet"
SECOND_MANIFEST = "reference/sample_manifest/manifest_export_20190201.parquet"
RESENT_SUBJECTS = "reference/subjects/subjects_export_20190301_resent.parquet"

MANIFEST = [
    sample("S002", IL2, "BASELINE", "WHOLE_BLOOD", 1),
    sample("S003", IL2, "M3", "WHOLE_BLOOD", 85),
    sample("S005", PBO, "BASELINE", "WHOLE_BLOOD", -3),
    sample("S006", IL2, "M3", "SERUM", 90),
]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    landing = tmp_path_factory.mktemp("snapshots")
    warehouse = tmp_path_factory.mktemp("snapshots_wh") / "mirocals.duckdb"
    write_reference(landing, MANIFEST)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003", cd4=700.0), treg("S005")])
    first = run_build(landing, warehouse)
    first_state = {
        "subjects": first.rows("select usubjid from core.subject order by 1"),
        "samples": first.rows("select sample_id, visit_code from core.sample order by 1"),
        "treg": first.rows("select sample_id from core.treg where paramcd = 'CD4CNT' order by 1"),
    }
    # the next exports: PBO left the trial database; S003 relabelled M1 (outside that window); S006 gone
    write_delivery(landing, "subjects", "subjects_export_20190201.parquet",
                   [subject(IL2, "FR01"), subject(RUNIN_ONLY, "UK01", randomised=False)])
    write_delivery(landing, "sample_manifest", "manifest_export_20190201.parquet", [
        MANIFEST[0], sample("S003", IL2, "M1", "WHOLE_BLOOD", 85), MANIFEST[2],
    ])
    second = run_build(landing, warehouse)
    return landing, warehouse, first_state, second


def test_the_first_build_has_everything(builds):
    _, _, first, _ = builds
    assert first["subjects"] == [(IL2,), (PBO,), (RUNIN_ONLY,)]
    assert first["samples"] == [("S002", "BASELINE"), ("S003", "M3"), ("S005", "BASELINE"), ("S006", "M3")]
    assert first["treg"] == [("S002",), ("S003",), ("S005",)]


def test_a_subject_missing_from_the_newest_export_is_no_longer_current(builds):
    second = builds[3]
    assert second.rows("select usubjid from core.subject order by 1") == [(IL2,), (RUNIN_ONLY,)]
    # the blinded build's dummy randomisation is drawn for the current subjects only
    assert second.rows(
        "select usubjid from raw.randomisation where delivery_id = "
        "(select max(delivery_id) from audit.delivery where family = 'randomisation' and status = 'accepted')"
    ) == [(IL2,)]
    # its sample's results are held back, with the reason, not kept from the older export
    assert second.scalar("select count(*) from core.treg where sample_id = 'S005'") == 0
    held = second.rows("select rule, reason from quarantine.rejected_rows where family = 'treg' "
                       "and json_extract_string(delivered_row, '$.sample_id') = 'S005'")
    assert held and {rule for rule, _ in held} == {"subject_unknown"}, held


def test_a_sample_missing_or_held_back_in_the_newest_manifest_is_no_longer_current(builds):
    second = builds[3]
    assert second.rows("select sample_id, visit_code from core.sample order by 1") == [("S002", "BASELINE")]
    assert second.scalar("select count(*) from core.treg where sample_id = 'S003'") == 0
    rules = dict(second.rows("select sample_id, qc_rule from staging.stg_biobank__sample where is_latest"))
    assert rules["S003"] == "collection_out_of_window" and "S006" not in rules


def test_every_removal_is_recorded_in_audit_correction(builds):
    # S005 is still in the manifest: it is held back because its subject was removed, which is
    # the removal recorded (its rows are in quarantine as subject_unknown)
    second = builds[3]
    removed = second.rows(
        "select family, record_key, superseded_file_name, replaced_by_file_name, replacing_values, value_changed "
        "from audit.correction where removed order by family, record_key")
    assert removed == [
        ("sample_manifest", "S003", "reference/sample_manifest/manifest_export_20190101.parquet", SECOND_MANIFEST, None, True),
        ("sample_manifest", "S006", "reference/sample_manifest/manifest_export_20190101.parquet", SECOND_MANIFEST, None, True),
        ("subjects", PBO, FIRST_SUBJECTS, SECOND_SUBJECTS, None, True),
    ]
    assert second.scalar("select bool_and(balanced) from audit.reconciliation") is True


def test_an_earlier_export_sent_again_is_the_newest_export(builds, tmp_path):
    landing, warehouse, _, _ = builds
    (landing / RESENT_SUBJECTS).write_bytes((landing / FIRST_SUBJECTS).read_bytes())
    third = run_build(landing, warehouse)
    status, warnings = third.rows("select status, warnings from audit.delivery where file_name = ?", [RESENT_SUBJECTS])[0]
    assert status == "accepted"
    assert "an earlier export; taken in again as the newest export" in warnings
    assert third.rows("select usubjid from core.subject order by 1") == [(IL2,), (PBO,), (RUNIN_ONLY,)]
    # the same bytes once more, now the newest export, are a duplicate as before
    (landing / "reference/subjects/subjects_export_20190302_again.parquet").write_bytes((landing / FIRST_SUBJECTS).read_bytes())
    fourth = run_build(landing, warehouse)
    assert fourth.scalar("select status from audit.delivery where file_name like '%20190302_again%'") == "duplicate"


def test_an_earlier_export_moved_into_a_subfolder_changes_nothing(builds):
    landing, warehouse, _, _ = builds
    current = run_build(landing, warehouse).rows("select usubjid from core.subject order by 1")
    archive = landing / "reference/subjects/archive"
    archive.mkdir()
    (landing / SECOND_SUBJECTS).rename(archive / "subjects_export_20190201.parquet")
    moved = run_build(landing, warehouse)
    status, reason = moved.rows("select status, reason from audit.delivery where file_name like '%archive%'")[0]
    assert status == "duplicate"
    assert f"({SECOND_SUBJECTS}), already loaded; nothing new was loaded. It is that file, moved or renamed." in reason
    assert moved.rows("select usubjid from core.subject order by 1") == current


def test_an_earlier_export_sent_again_after_the_original_was_archived_is_the_newest(builds):
    landing, warehouse, _, _ = builds
    archived = landing / "reference/subjects/archive/subjects_export_20190201.parquet"
    again = landing / "reference/subjects/subjects_export_20190401_sent_again.parquet"
    again.write_bytes(archived.read_bytes())  # a copy (a new file), not the archived file moved
    runner = CliRunner()
    env = {"COLUMNS": "400", "NO_COLOR": "1"}
    # `mirocals check` gives the build's verdicts: the new copy would load, the archived file not again
    checked = runner.invoke(app, ["check", str(again), "--landing", str(landing), "--warehouse", str(warehouse)], env=env)
    assert checked.exit_code == 0 and "ACCEPTED (subjects)" in checked.output, checked.output
    checked = runner.invoke(app, ["check", str(archived), "--landing", str(landing), "--warehouse", str(warehouse)], env=env)
    assert checked.exit_code == 1 and "was taken in already" in " ".join(checked.output.split()), checked.output
    resent = run_build(landing, warehouse)
    status, warnings = resent.rows("select status, warnings from audit.delivery where file_name like '%sent_again%'")[0]
    assert status == "accepted" and "taken in again as the newest export" in warnings
    assert resent.rows("select usubjid from core.subject order by 1") == [(IL2,), (RUNIN_ONLY,)]


def test_deliveries_are_taken_in_by_name_ignoring_case_numbers_by_value_a_name_before_its_longer_forms(tmp_path):
    folder = tmp_path / "labs" / "neurofilament"
    folder.mkdir(parents=True)
    names = ("NfL_batch02_corrected.parquet", "nfl_batch10.parquet", "nfl_batch02.parquet", "nfl_batch9.parquet",
             "nfl_batch01.parquet", "NFL_BATCH03.parquet", "nfl_batch02-corrected.parquet")
    for name in names:
        (folder / name).write_bytes(b"")
    found = [p.name for p in discover_files(tmp_path, load_contracts()["neurofilament"])]
    # '-' sorts before '.' character by character: the correction would have come first
    assert found == ["nfl_batch01.parquet", "nfl_batch02.parquet", "nfl_batch02-corrected.parquet",
                     "NfL_batch02_corrected.parquet", "NFL_BATCH03.parquet", "nfl_batch9.parquet",
                     "nfl_batch10.parquet"]


def test_a_delivery_whose_name_sorts_before_one_taken_in_earlier_is_accepted_with_a_warning(tmp_path):
    """A rebuild from the landing zone takes files in by name: a late file whose name sorts first
    would lose to the earlier one there, while it won in the build that saw it arrive."""
    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "mirocals.duckdb"
    write_reference(landing, MANIFEST)
    write_delivery(landing, "treg", "treg_batch02.parquet", [treg("S002", cd4=700.0)])
    run_build(landing, warehouse)
    write_delivery(landing, "treg", "treg_batch01_resent.parquet", [treg(" s002 ", cd4=710.0)])
    # a late file of other samples loses nothing in a rebuild: no remark
    write_delivery(landing, "treg", "treg_batch01_late.parquet", [treg("S003", cd4=720.0)])
    built = run_build(landing, warehouse)
    warnings = dict(built.rows("select file_name, warnings from audit.delivery where family = 'treg'"))
    assert warnings["labs/treg/treg_batch02.parquet"] is None
    assert warnings["labs/treg/treg_batch01_late.parquet"] is None
    assert ("its name sorts before labs/treg/treg_batch02.parquet, taken in earlier, which carries some of the same "
            "sample_ids: a warehouse rebuilt" in warnings["labs/treg/treg_batch01_resent.parquet"])
    # checked outside the landing zone, a file has no landing-zone name to sort by
    outside = write_delivery(tmp_path / "outbox", "treg", "a_resent.parquet", [treg("S002", cd4=730.0)])
    checked = CliRunner().invoke(app, ["check", str(outside), "--landing", str(landing), "--warehouse", str(warehouse)])
    assert checked.exit_code == 0 and "sorts before" not in checked.output, checked.output


@pytest.mark.parametrize("newer", ["NFL_BATCH04.parquet", "nfl_batch04.parquet"])
def test_names_equal_but_for_case_are_taken_in_as_they_were_written(tmp_path, newer):
    # a rebuild from nothing must make the same file current as the builds that saw them arrive
    folder = tmp_path / "labs" / "neurofilament"
    folder.mkdir(parents=True)
    older = "nfl_batch04.parquet" if newer == "NFL_BATCH04.parquet" else "NFL_BATCH04.parquet"
    (folder / older).write_bytes(b"")
    (folder / newer).write_bytes(b"")
    os.utime(folder / older, ns=(1_000_000_000, 1_000_000_000))
    os.utime(folder / newer, ns=(2_000_000_000, 2_000_000_000))
    found = [p.name for p in discover_files(tmp_path, load_contracts()["neurofilament"])]
    assert found == [older, newer]


def test_a_lab_file_sent_again_without_some_of_its_rows_is_accepted_with_a_warning(tmp_path):
    """Append semantics: a row the new version lacks keeps its earlier value current; the lab is told."""
    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "mirocals.duckdb"
    write_reference(landing, MANIFEST)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003", cd4=700.0), treg("S005")])
    first = run_build(landing, warehouse)
    earlier = first.scalar("select delivery_id from audit.delivery where family = 'treg'")
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("s002 "), treg("S003", cd4=710.0)])
    second = run_build(landing, warehouse)
    (warnings,) = second.rows("select warnings from audit.delivery where family = 'treg' and delivery_id > ?", [earlier])[0]
    assert (f"1 key(s) (sample_id) of its earlier version (delivery {earlier}) are not in it, such as S005: "
            f"their rows from delivery {earlier} are not replaced, and where valid their values stay current") in warnings
    assert second.rows("select sample_id, aval from core.treg where paramcd = 'CD4CNT' order by 1") == [
        ("S002", 800.0), ("S003", 710.0), ("S005", 800.0)]
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003", cd4=720.0), treg("S005")])
    third = run_build(landing, warehouse)
    assert third.rows("select warnings from audit.delivery where family = 'treg' order by delivery_id desc limit 1") == [(None,)]


def test_a_held_back_correction_is_listed_with_the_value_that_stays_current(tmp_path):
    landing, warehouse = tmp_path / "landing", tmp_path / "wh" / "mirocals.duckdb"
    write_reference(landing, MANIFEST)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003", cd4=700.0)])
    write_delivery(landing, "neurofilament", "nfl_batch01.parquet", [nf("S006", "40.0")])
    first = run_build(landing, warehouse)
    earlier = dict(first.rows("select family, delivery_id from audit.delivery where family in ('treg', 'neurofilament')"))
    # S002's correction fails its range; S005 is new and held back too, but corrects nothing
    write_delivery(landing, "treg", "treg_batch02.parquet", [treg("S002", cd4=-5.0, treg_count=40.0),
                                                             treg("S005", cd4=-5.0, treg_count=40.0)])
    # an analyte in another case is held back (analyte_known), and is still a correction of NfL
    write_delivery(landing, "neurofilament", "nfl_batch02.parquet", [nf("S006", "41.0", analyte="NFL")])
    second = run_build(landing, warehouse)
    listed = second.dicts("select * from audit.held_back_correction order by family desc")
    assert [(r["family"], r["record_key"], r["rule"], r["current_delivery_id"], r["current_row_number"])
            for r in listed] == [("treg", "S002", "cd4_count_in_range, treg_within_cd4", earlier["treg"], 1),
                                 ("neurofilament", "S006 nfl", "analyte_known", earlier["neurofilament"], 1)]
    assert listed[0]["held_back_file_name"] == "labs/treg/treg_batch02.parquet"
    # its gene part reads the gene table: the build does not preview it
    event = second.instance.get_latest_materialization_event(dg.AssetKey(["audit", "held_back_correction"]))
    assert "Not previewed" in event.asset_materialization.metadata["preview"].value
    assert second.rows("select aval from core.treg where sample_id = 'S002' and paramcd = 'CD4CNT'") == [(800.0,)]
