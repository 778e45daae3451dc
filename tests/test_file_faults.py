"""A file whose content no later step can handle stops only itself: the build refuses it with a
reason, takes in every other file, and the next build does not stop on it either. Real builds."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import pipelines.ingest.delivery as delivery
from pipelines.assets.automation import landing_files
from pipelines.build import build_warehouse
from pipelines.cli import app
from tests.conftest import run_build
from tests.landing import nf, treg, write_delivery, write_reference

TREG_FILE = "labs/treg/treg_batch01.parquet"
NF_FILE = "labs/neurofilament/nf_batch01.parquet"


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", Path(TREG_FILE).name, [treg("S002", cd4=812.5), treg("S003", cd4=790.0)])
    write_delivery(landing, "neurofilament", Path(NF_FILE).name, [nf("S001", "61.5"), nf("S004", "70.0")])
    return landing


def test_text_delivered_as_string_view_is_taken_in(landing, tmp_path):
    # Arrow's string_view, kept in the file's Arrow schema: read as text like any other
    path = landing / TREG_FILE
    table = pq.read_table(path)
    pq.write_table(table.set_column(0, "sample_id", table["sample_id"].cast(pa.string_view())), path)
    assert pq.read_schema(path).field("sample_id").type == pa.string_view()
    built = run_build(landing, tmp_path / "wh" / "mirocals.duckdb")
    assert dict(built.rows("select sample_id, aval from core.treg where paramcd = 'CD4CNT'")) == {
        "S002": 812.5, "S003": 790.0}


def _failing_on(suite: str, message: str):
    """Validation that raises, for ``suite``'s deliveries, an error no check names."""
    validate = delivery.validate_table

    def validate_or_fail(name, *args, **kwargs):
        if name == suite:
            raise ValueError(message)
        return validate(name, *args, **kwargs)

    return validate_or_fail


def test_a_fault_no_check_names_refuses_the_file_and_the_build_goes_on(landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    with monkeypatch.context() as faulty:
        faulty.setattr(delivery, "validate_table", _failing_on("treg", "a fault of this file's content that no check names yet"))
        built = run_build(landing, warehouse)
    refused = built.dicts("select status, rule, reason, rows_delivered from audit.delivery where file_name = ?", [TREG_FILE])
    assert refused == [{
        "status": "rejected", "rule": "file_processable", "rows_delivered": 2,
        # the Treg family's values are withheld from a blinded build: the error's message may quote one
        "reason": f"{TREG_FILE}: the file could not be taken in (ValueError); nothing of it was stored. No check "
                  "names this fault yet: tell the warehouse's maintainers, and deliver the file again once it is "
                  "corrected.",
    }]
    assert built.scalar("select count(*) from raw.treg") == 0
    assert built.scalar("select count(*) from quarantine.rejected_files where file_name = ?", [TREG_FILE]) == 1
    # the other family's file was taken in by the same build, and everything reconciles
    assert built.scalar("select count(*) from core.neurofilament") == 2
    assert built.scalar("select bool_and(balanced) from audit.reconciliation where rows_delivered is not null")
    # the refused file is not looked at again until it is delivered again
    again = run_build(landing, warehouse)
    assert again.scalar("select count(*) from audit.delivery where file_name = ?", [TREG_FILE]) == 1


def test_the_message_of_a_fault_no_check_names_is_kept_for_a_family_without_withheld_values(landing, tmp_path, monkeypatch):
    monkeypatch.setattr(delivery, "validate_table", _failing_on("neurofilament", "year 20210 is out of range"))
    built = run_build(landing, tmp_path / "wh" / "mirocals.duckdb")
    assert "(ValueError: year 20210 is out of range)" in built.scalar(
        "select reason from audit.delivery where file_name = ?", [NF_FILE])
    assert built.scalar("select count(*) from core.treg where paramcd = 'CD4CNT'") == 2


def test_a_file_named_in_latin1_is_listed_not_taken_in_and_stops_nothing(landing, tmp_path):
    # "treg_batch02_résultats.parquet" written by a tool that encodes names in Latin-1
    folder = os.fsencode(landing / "labs" / "treg")
    latin1 = os.path.join(folder, "treg_batch02_r\xe9sultats.parquet".encode("latin-1"))
    with open(latin1, "wb") as copy:
        copy.write((landing / TREG_FILE).read_bytes())
    found, _ = landing_files(landing, {}, now=time.time() + 60)
    # the sensor passes it by, as every build does
    assert sorted(name for _, name, *_ in found) == sorted([
        NF_FILE, TREG_FILE, "reference/sample_manifest/manifest_export_20190101.parquet",
        "reference/subjects/subjects_export_20190101.parquet"])
    built = run_build(landing, tmp_path / "wh" / "mirocals.duckdb")
    assert built.rows("select file_name, reason from quarantine.unrecognised_files") == [(
        "labs/treg/treg_batch02_r\\xe9sultats.parquet",
        "its name is not UTF-8 text (a name written in Latin-1 or cp1252?); not taken in: rename it.")]
    assert built.scalar("select count(*) from core.treg where paramcd = 'CD4CNT'") == 2
    assert built.scalar("select count(*) from core.neurofilament") == 2


def test_the_build_command_names_each_refused_file_and_why(landing, tmp_path):
    truncated = write_delivery(landing, "treg", "treg_batch02.parquet", [treg("S002"), treg("S003")])
    truncated.write_bytes(truncated.read_bytes()[:100])
    result = CliRunner().invoke(app, ["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh" / "m.duckdb")])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert ("check failed: raw/treg:delivery_contract rejected labs/treg/treg_batch02.parquet: not a readable "
            "Parquet file (truncated or damaged in transfer?)") in printed


def _treg_deliveries(built) -> list[dict]:
    return built.dicts("select status, rule, rows_delivered from audit.delivery where file_name = ?", [TREG_FILE])


def test_running_out_of_memory_while_taking_a_file_in_refuses_nothing(landing, tmp_path, monkeypatch):
    """pyarrow's ArrowMemoryError is an ArrowException, the errors a file's content raises: it
    refused the file as unprocessable, for good. A fault of the machine now stops the run, nothing
    of the file is recorded, and the next build takes it in."""
    warehouse = tmp_path / "wh" / "mirocals.duckdb"

    def out_of_memory(name, *args, **kwargs):
        raise pa.ArrowMemoryError("malloc of size 1073741824 failed")

    with monkeypatch.context() as faulty:
        faulty.setattr(delivery, "validate_table", out_of_memory)
        stopped = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
    assert not stopped.success
    built = run_build(landing, warehouse)
    assert _treg_deliveries(built) == [{"status": "accepted", "rule": None, "rows_delivered": 2}]
    assert built.scalar("select count(*) from core.treg where paramcd = 'CD4CNT'") == 2


def _interrupted_while_duckdb_reads_python() -> None:
    """Send this process SIGINT while DuckDB reads a Python object (a generator of record
    batches): whatever the signal handler raises comes back from DuckDB as its own error."""
    import signal

    import duckdb

    def batches():
        yield pa.record_batch({"n": [1]})
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs here
        yield pa.record_batch({"n": [2]})

    stream = pa.RecordBatchReader.from_batches(pa.schema({"n": pa.int64()}), batches())  # noqa: F841 (read by name)
    # one thread: DuckDB reads the stream on the main thread, where Python runs signal handlers
    duckdb.connect(config={"threads": 1}).execute("select count(*) from stream").fetchall()


@pytest.mark.parametrize("step", ["_cast_with", "validate_table"])  # the contract check; loading and validating
def test_a_run_interrupted_while_duckdb_reads_a_file_refuses_nothing_and_stops(landing, tmp_path, monkeypatch, step):
    """Stopping a run (SIGTERM, SIGINT, a cancel from the UI) while DuckDB was reading a Python
    object: Dagster's interruption came back as DuckDB's InvalidInputException, taken for a fault
    of the file. The file was refused for good and the run went on as if not stopped."""
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    if step == "_cast_with":
        # DuckDB casts only columns delivered as another type than declared: numbers as text here
        table = pq.read_table(landing / TREG_FILE)
        table = table.set_column(table.column_names.index("cd4_count"), "cd4_count", table["cd4_count"].cast(pa.string()))
        pq.write_table(table, landing / TREG_FILE)
    original = getattr(delivery, step)

    def interrupted(*args, **kwargs):
        if any(arg == "treg" or str(arg).startswith("labs/treg/") for arg in args):  # the suite's name, or the file's
            _interrupted_while_duckdb_reads_python()
        return original(*args, **kwargs)

    with monkeypatch.context() as faulty:
        faulty.setattr(delivery, step, interrupted)
        stopped = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
    assert not stopped.success
    assert any("DagsterExecutionInterruptedError" in error for error in stopped.errors), stopped.errors
    built = run_build(landing, warehouse)
    assert _treg_deliveries(built) == [{"status": "accepted", "rule": None, "rows_delivered": 2}]


def test_an_interruption_duckdb_reports_is_the_machines_fault_not_the_files():
    import duckdb
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._utils.interrupts import raise_interrupts_as

    # a step's signal handling, as Dagster installs it while a step runs
    with raise_interrupts_as(DagsterExecutionInterruptedError), pytest.raises(duckdb.InvalidInputException) as reported:
        _interrupted_while_duckdb_reads_python()
    assert "DagsterExecutionInterruptedError" in str(reported.value)
    assert delivery.machine_fault(reported.value)
    # a file's own fault, even one whose text names an interruption, is still the file's
    assert not delivery.machine_fault(duckdb.InvalidInputException("Could not convert string 'KeyboardInterrupt' to INT64"))
    assert not delivery.machine_fault(duckdb.ConversionException("Could not convert string 'x' to DOUBLE"))


def test_a_read_the_operating_system_fails_is_taken_in_by_the_next_build(landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    read_table = pq.read_table

    def failing_read(source, *args, **kwargs):
        if Path(source).name == Path(TREG_FILE).name:
            raise OSError(errno.EIO, "Input/output error", str(source))
        return read_table(source, *args, **kwargs)

    with monkeypatch.context() as faulty:
        faulty.setattr(delivery.pq, "read_table", failing_read)
        first = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
    assert first.success  # the other files are taken in; the Treg file waits
    assert _treg_deliveries(run_build(landing, warehouse)) == [{"status": "accepted", "rule": None, "rows_delivered": 2}]


def test_a_file_with_a_damaged_page_is_refused_as_unreadable(landing, tmp_path):
    # pyarrow raises an OSError for it too, without an errno: the file's fault, not the machine's
    path = landing / TREG_FILE
    pq.write_table(pa.table({name: pa.array(values * 5000) for name, values in pq.read_table(path).to_pydict().items()}),
                   path, compression="snappy")
    damaged = bytearray(path.read_bytes())
    column = pq.read_metadata(path).row_group(0).column(0)
    start, end = column.data_page_offset + 20, column.data_page_offset + column.total_compressed_size - 20
    damaged[start:end] = b"A" * (end - start)
    path.write_bytes(bytes(damaged))
    with pytest.raises(OSError, match="thrift"):
        pq.read_table(path)
    built = run_build(landing, tmp_path / "wh" / "mirocals.duckdb")
    assert [(d["status"], d["rule"]) for d in _treg_deliveries(built)] == [("rejected", "file_readable")]
