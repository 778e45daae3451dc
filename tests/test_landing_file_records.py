"""Earlier deliveries are not read again at every build: a file taken in is recognised by its
file-system record (size, modification and change times, inode, device) kept in
``audit.landing_file``; any write to the file changes its change time, and it is hashed and
judged again."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import pipelines.ingest.delivery as delivery
from pipelines.ingest.delivery import FileStat, recorded_digest
from pipelines.warehouse import read_digest_key
from tests.conftest import run_build
from tests.landing import IL2, PBO, RUNIN_ONLY, subject, treg, write_delivery, write_reference

TREG_FILE = "labs/treg/treg_batch01.parquet"


def recorded(warehouse, data: bytes) -> str:
    """The digest the warehouse records for these bytes (keyed in a blinded warehouse)."""
    return recorded_digest(hashlib.sha256(data).hexdigest(), read_digest_key(warehouse))


def _write_plain(table: pa.Table, path) -> None:
    # no compression or dictionary: changing one double leaves the file's size as it was
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)


@pytest.fixture
def remembered(tmp_path, monkeypatch):
    """A small landing zone built once, each file's record trusted at once (no settling wait)."""
    monkeypatch.setattr(delivery, "SETTLED_SECONDS", 0)
    landing = tmp_path / "landing"
    write_reference(landing)
    table = pa.Table.from_pylist([treg("S002"), treg("S003", cd4=700.0), treg("S005", cd4=910.0)])
    (landing / TREG_FILE).parent.mkdir(parents=True, exist_ok=True)
    _write_plain(table.cast(pq.read_schema(write_delivery(tmp_path / "typed", "treg", "t.parquet", [treg("S002")]))),
                 landing / TREG_FILE)
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    return landing, warehouse, run_build(landing, warehouse)


def test_every_file_taken_in_is_recorded_with_the_hash_of_its_bytes(remembered):
    landing, _, built = remembered
    records = built.dicts("select * from audit.landing_file")
    delivered = {name for name, in built.rows("select file_name from audit.delivery")}
    assert {r["file_name"] for r in records} == delivered
    for record in records:
        if record["file_name"].startswith("dummy/"):
            continue  # the blinded build's dummy randomisation, written in the warehouse's work folder
        path = landing / record["file_name"]
        assert record["file_sha256"] == recorded(built.warehouse, path.read_bytes()), record["file_name"]
        stat = FileStat.of(path)
        assert (record["file_bytes"], record["mtime_ns"], record["ctime_ns"], record["inode"]) == (
            stat.file_bytes, stat.mtime_ns, stat.ctime_ns, stat.inode)


def test_a_rebuild_reads_no_earlier_delivery(remembered, monkeypatch):
    landing, warehouse, built = remembered
    hashed = []

    def recording_sha256(path):
        hashed.append(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    monkeypatch.setattr(delivery, "file_sha256", recording_sha256)
    again = run_build(landing, warehouse)
    # only the dummy randomisation, written anew by every blinded build, is hashed again
    assert [p.name for p in hashed] == ["dummy_randomisation.parquet"]
    assert again.rows("select * from audit.delivery order by delivery_id") == built.rows(
        "select * from audit.delivery order by delivery_id")


def test_a_rebuild_looks_at_new_files_only_finding_the_others_in_one_query(remembered, monkeypatch):
    # a query per file already taken in cost every build more as deliveries piled up (about 1.5 ms
    # a file): the files taken in and unchanged are found for the whole folder at once
    landing, warehouse, _ = remembered
    for batch, usubjid in ((2, "S003"), (3, "S005"), (4, "S002")):
        write_delivery(landing, "treg", f"treg_batch{batch:02d}.parquet", [treg(usubjid)])
    run_build(landing, warehouse)
    new = write_delivery(landing, "treg", "treg_batch05.parquet", [treg("S003", cd4=777.0)])
    looked_at = []
    take_in = delivery._take_in

    def recording_take_in(con, root, path, *args):
        looked_at.append(path.relative_to(root).as_posix())
        return take_in(con, root, path, *args)

    monkeypatch.setattr(delivery, "_take_in", recording_take_in)
    again = run_build(landing, warehouse)
    # the new file, and the dummy randomisation every blinded build writes anew
    assert sorted(looked_at) == ["dummy/dummy_randomisation.parquet", new.relative_to(landing).as_posix()]
    assert again.scalar("select count(*) from audit.delivery where family = 'treg' and status = 'accepted'") == 5
    # a file touched since it was taken in is looked at again (and found to be the same bytes)
    os.utime(landing / "labs" / "treg" / "treg_batch02.parquet")
    looked_at.clear()
    run_build(landing, warehouse)
    assert "labs/treg/treg_batch02.parquet" in looked_at


def test_a_file_changed_in_place_with_its_size_and_time_kept_is_judged_again(remembered):
    landing, warehouse, built = remembered
    path = landing / TREG_FILE
    before = FileStat.of(path)
    table = pq.read_table(path)
    changed = table.set_column(
        table.schema.get_field_index("cd4_count"), "cd4_count",
        pc.add(table["cd4_count"], pa.scalar(1.0, table.schema.field("cd4_count").type)),
    )
    _write_plain(changed, path)
    os.utime(path, ns=(before.mtime_ns, before.mtime_ns))
    after = FileStat.of(path)
    assert (after.file_bytes, after.mtime_ns, after.inode) == (before.file_bytes, before.mtime_ns, before.inode)
    assert after.ctime_ns != before.ctime_ns

    rebuilt = run_build(landing, warehouse)
    deliveries = rebuilt.rows(
        "select status, file_sha256 from audit.delivery where file_name = ? order by delivery_id", [TREG_FILE])
    assert [status for status, _ in deliveries] == ["accepted", "accepted"]
    assert deliveries[1][1] == recorded(warehouse, path.read_bytes()) != deliveries[0][1]
    assert rebuilt.scalar("select file_sha256 from audit.landing_file where file_name = ?", [TREG_FILE]) == deliveries[1][1]
    current = rebuilt.scalar(
        "select count(*) from core.treg where file_name = ? and paramcd = 'CD4CNT' and delivery_id = "
        "(select max(delivery_id) from audit.delivery where file_name = ?)", [TREG_FILE, TREG_FILE])
    assert current > 0, "the changed values are the current ones"


def test_a_file_changed_moments_before_it_is_hashed_is_not_remembered(tmp_path):
    path = tmp_path / "delivery.parquet"
    path.write_bytes(b"first bytes")
    stat = FileStat.of(path)
    assert delivery._settled_stat(path, stat, time.time_ns()) is None
    settled_at = stat.ctime_ns + delivery.SETTLED_SECONDS * 1_000_000_000
    assert delivery._settled_stat(path, stat, settled_at) == stat
    path.write_bytes(b"other bytes")  # changed while it was being hashed
    assert delivery._settled_stat(path, stat, settled_at + 10**12) is None


def test_a_file_changed_back_to_earlier_bytes_is_taken_in_as_the_newest(remembered):
    landing, warehouse, built = remembered
    path = landing / TREG_FILE
    original = path.read_bytes()
    values = "select sample_id, aval from core.treg where paramcd = 'CD4CNT' and file_name = ?"
    first = dict(built.rows(values, [TREG_FILE]))
    table = pq.read_table(path)
    _write_plain(table.set_column(
        table.schema.get_field_index("cd4_count"), "cd4_count", pc.add(table["cd4_count"], 50.0)), path)
    run_build(landing, warehouse)
    path.write_bytes(original)  # the lab undoes its change

    undone = run_build(landing, warehouse)
    deliveries = undone.rows("select status, file_sha256, warnings from audit.delivery where file_name = ? "
                             "order by delivery_id", [TREG_FILE])
    assert [status for status, _, _ in deliveries] == ["accepted", "accepted", "accepted"]
    assert deliveries[2][1] == deliveries[0][1] == recorded(warehouse, original)
    assert "an earlier version of this file; taken in again as the newest" in deliveries[2][2]
    assert first and dict(undone.rows(values, [TREG_FILE])) == first


def test_a_file_put_back_after_a_refused_replacement_is_not_taken_in_again(remembered):
    landing, warehouse, built = remembered
    path = landing / TREG_FILE
    original = path.read_bytes()
    values = "select sample_id, aval, delivery_id from core.treg where paramcd = 'CD4CNT' order by 1"
    first = built.rows(values)
    path.write_bytes(original[:1000])  # caught mid-transfer: refused as unreadable
    run_build(landing, warehouse)
    path.write_bytes(original)  # the transfer completes: the file is as it was loaded
    after = run_build(landing, warehouse)
    statuses = after.rows("select status from audit.delivery where file_name = ? order by delivery_id", [TREG_FILE])
    assert statuses == [("accepted",), ("rejected",)]
    assert after.rows(values) == first


@pytest.mark.parametrize("rows, status", [(2, "accepted"), (0, "rejected")])
def test_a_file_replaced_between_hashing_and_reading_is_not_loaded_under_the_wrong_hash(remembered, monkeypatch, rows, status):
    landing, warehouse, built = remembered
    table = pq.read_table(landing / TREG_FILE)
    path = landing / "labs/treg/treg_batch99_in_transfer.parquet"
    pq.write_table(table, path)
    before = built.scalar("select count(*) from audit.delivery")
    replacement = table.slice(0, rows)
    real_sha256 = delivery.file_sha256

    def hash_then_replace(hashed):
        digest = real_sha256(hashed)
        if hashed == path:
            staged = path.with_name(".replacement")
            pq.write_table(replacement, staged)
            os.replace(staged, path)  # a transfer lands the new file right after the hash
        return digest

    # another new file of the family, taken in by the same build
    other = landing / "labs/treg/treg_batch98_on_time.parquet"
    pq.write_table(table.slice(0, 1), other)
    monkeypatch.setattr(delivery, "file_sha256", hash_then_replace)
    during = run_build(landing, warehouse)
    monkeypatch.undo()
    # the changing file is not taken in (nothing of it recorded), the other file is, and the
    # contract check of raw/treg says which file was left for the next build
    assert during.scalar("select count(*) from audit.delivery") == before + 1
    assert during.scalar("select status from audit.delivery where file_name = ?", [other.relative_to(landing).as_posix()]) == "accepted"
    assert any(c.startswith("raw/treg:") for c in during.result.failed_checks), during.result.failed_checks
    after = run_build(landing, warehouse)
    assert after.scalar("select count(*) from audit.delivery") == before + 2
    taken_in = after.rows("select file_sha256, rows_delivered, status from audit.delivery where file_name = ?",
                          ["labs/treg/treg_batch99_in_transfer.parquet"])
    assert taken_in == [(recorded(warehouse, path.read_bytes()), rows, status)]


@pytest.mark.parametrize("event", ["permission_denied", "moved_away_after_hashing"])
def test_an_unreadable_file_is_left_for_a_later_build_and_the_others_are_taken_in(remembered, monkeypatch, event):
    landing, warehouse, built = remembered
    table = pq.read_table(landing / TREG_FILE)
    locked = landing / f"labs/treg/treg_batch97_{event}.parquet"
    readable = landing / f"labs/treg/treg_batch97_{event}_readable.parquet"
    pq.write_table(table.slice(0, 1), locked)
    pq.write_table(table.slice(1, 1), readable)
    before = built.scalar("select max(delivery_id) from audit.delivery")
    real_sha256 = delivery.file_sha256
    kept = locked.read_bytes()

    def unreadable(path):
        if path == locked and event == "permission_denied":  # as the OS answers a user who may not read it
            raise PermissionError(13, "Permission denied", str(path))
        digest = real_sha256(path)
        if path == locked:
            path.unlink()  # an operator moves it away while the build reads it
        return digest

    monkeypatch.setattr(delivery, "file_sha256", unreadable)
    during = run_build(landing, warehouse)
    monkeypatch.undo()
    names = [n for (n,) in during.rows("select file_name from audit.delivery where delivery_id > ?", [before])]
    assert names == [readable.relative_to(landing).as_posix()]
    assert any(c.startswith("raw/treg:") for c in during.result.failed_checks), during.result.failed_checks
    locked.write_bytes(kept)
    after = run_build(landing, warehouse)
    assert after.scalar("select status from audit.delivery where file_name = ?",
                        [locked.relative_to(landing).as_posix()]) == "accepted"


def test_a_lost_work_copy_is_started_again_from_the_published_warehouse(remembered):
    landing, warehouse, built = remembered
    extra = landing / "labs/treg/treg_batch02.parquet"
    pq.write_table(pq.read_table(landing / TREG_FILE).slice(0, 1), extra)
    run_build(landing, warehouse)
    extra.unlink()  # the lab's file leaves the landing zone after it was taken in (archived)
    query = "select delivery_id, file_name, file_sha256, received_at from audit.delivery order by 1"
    before = run_build(landing, warehouse).rows(query)
    shutil.rmtree(warehouse.parent / ".work")  # the work folder is cleaned up
    after = run_build(landing, warehouse)
    assert after.rows(query) == before  # nothing dropped, renumbered or re-dated
    assert after.scalar("select count(*) from raw.treg where file_name = ?", ["labs/treg/treg_batch02.parquet"]) == 1


def test_an_earlier_export_written_again_on_its_old_inode_is_not_taken_for_a_move(remembered):
    # a file system hands a freed inode straight back: the same inode is not enough to call a
    # file the earlier one moved; a move also keeps its modification time
    landing, warehouse, _ = remembered
    first = landing / "reference/subjects/subjects_export_20190101.parquet"
    newer = write_delivery(landing, "subjects", "subjects_export_20190201.parquet", [
        subject(IL2, "FR01", age=61), subject(PBO, "FR01", onset="BULBAR", sex="F"), subject(RUNIN_ONLY, "UK01", randomised=False),
    ])
    assert run_build(landing, warehouse).scalar("select age from core.subject where usubjid = ?", [IL2]) == 61
    data = first.read_bytes()
    time.sleep(0.01)
    with first.open("r+b") as handle:  # the earlier export written again, on the same inode...
        handle.write(data)
    resent = first.with_name("subjects_export_20190301.parquet")
    first.rename(resent)  # ...under a new name
    after = run_build(landing, warehouse)
    status, warnings = after.rows("select status, warnings from audit.delivery where file_name = ?",
                                  [resent.relative_to(landing).as_posix()])[0]
    assert status == "accepted" and "taken in again as the newest export" in warnings
    assert after.scalar("select age from core.subject where usubjid = ?", [IL2]) == 60
    assert newer.exists()
