"""Great Expectations Data Docs are built for every validation, linked from the metadata, and in
a blinded build show no treatment-revealing value."""

import errno
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.build import build_warehouse
from tests.conftest import run_build
from tests.landing import treg, write_delivery, write_reference


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    write_reference(landing)
    # row 2: an implausible %Treg (73.5 %) and a Treg count above the CD4 count (1234.5 > 800)
    write_delivery(landing, "treg", "treg_batch01.parquet", [
        treg("S002"), treg("S003", pct=73.5, treg_count=1234.5), treg("S005", cd4=-40.0),
    ])
    return run_build(landing, tmp_path_factory.mktemp("wh") / "mirocals.duckdb")


ROOT = Path(__file__).resolve().parents[1]


def _one_treg_delivery(tmp_path):
    """A landing zone with the reference files and one treg delivery, and where to build it."""
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002")])
    return landing, tmp_path / "wh" / "mirocals.duckdb"


def _docs(built):
    return built.warehouse.parent / f"{built.warehouse.stem}_data_docs"


def test_a_validation_page_per_accepted_delivery(built):
    docs = _docs(built)
    assert (docs / "index.html").exists()
    accepted = built.rows("select delivery_id, family from audit.delivery where status = 'accepted'")
    for delivery_id, family in accepted:
        pages = list((docs / "validations" / family).rglob(f"delivery-{delivery_id:05d}*.html"))
        assert pages, f"no Data Docs page for delivery {delivery_id} ({family})"
    index = (docs / "index.html").read_text()
    assert "treg" in index


def test_metadata_links_the_site_and_pages(built):
    metadata = _raw_treg_metadata(built)
    joined = " ".join(str(metadata[key]) for key in ("data_docs", "validation_pages"))
    assert (_docs(built) / "index.html").as_uri() in joined
    assert re.search(r"labs/treg/treg_batch01.parquet\]\(file://.*delivery-\d{5}\.html\)", joined)


def test_blinded_data_docs_show_no_treatment_revealing_value(built):
    pages = list((_docs(built) / "validations" / "treg").rglob("*.html"))
    text = " ".join(p.read_text() for p in pages)
    assert "withheld" in text
    assert "73.5" not in text and "1234.5" not in text
    # nor the validation results kept beside the site, from which its pages are rendered again
    results = list((built.warehouse.parent / f".{_docs(built).name}.validations").rglob("*.json"))
    stored = " ".join(p.read_text() for p in results)
    assert results and "withheld" in stored
    assert "73.5" not in stored and "1234.5" not in stored
    # a value that reveals nothing is still shown, so a data manager can act on it
    assert "-40" in text


def test_blinded_data_docs_carry_no_hash_of_the_delivered_values(built):
    # GX prints an MD5 of the validated frame: for a small delivery, trying values of the
    # withheld columns until the hash matches would find them again
    pages = list((_docs(built) / "validations" / "treg").rglob("*.html"))
    assert pages
    for page in pages:
        assert "pandas_data_fingerprint" not in page.read_text(), page


def test_a_later_build_keeps_the_pages_of_earlier_ones_and_links_no_missing_page(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S005", cd4=-40.0)])
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    first = run_build(landing, warehouse)
    docs = _docs(first)
    before = sorted(p.relative_to(docs) for p in (docs / "validations").rglob("*.html"))
    assert before
    write_delivery(landing, "treg", "treg_batch02.parquet", [treg("S003")])
    second = run_build(landing, warehouse)
    after = sorted(p.relative_to(docs) for p in (docs / "validations").rglob("*.html"))
    assert set(before) < set(after), "the second build removed the first build's pages"
    index = (docs / "index.html").read_text()
    linked = set(re.findall(r'href="([^"#]+\.html)"', index)) - {"index.html"}
    assert linked and all((docs / link).exists() for link in linked), sorted(linked)
    # the index is rendered after the step's files: it lists the newest delivery's page
    newest = second.scalar("select max(delivery_id) from audit.delivery where family = 'treg'")
    assert re.search(rf"'_table_row_link_path': 'validations/treg/[^']*/delivery-{newest:05d}\.html'", index)


def test_pages_render_as_with_gx_own_view_and_compile_the_templates_once(built):
    # pipelines/ingest/data_docs_views.py only keeps GX's compiled templates between pages
    import jinja2
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    from pipelines.ingest.data_docs_views import PageView
    from pipelines.ingest.expectations import _results_store

    results = _results_store(_docs(built))
    key = next(k for k in results.list_keys() if k.expectation_suite_identifier.name == "treg")
    result = results.get(key)

    def page(view) -> str:
        # a rendered document is changed by rendering it: each view gets its own
        html = view.render(ValidationResultsPageRenderer().render(result))
        html = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", html)
        return re.sub(r"\d{8}T\d{6}\.\d{6}Z", "<time>", html)

    ours = page(PageView())
    assert "treg_count" in ours and "withheld" in ours
    assert ours == page(DefaultJinjaPageView())
    # a page rendered by a new view (GX makes one per build_data_docs call) compiles nothing
    view, compiled = PageView(), []
    view.env.compile = lambda *args, **kwargs: compiled.append(args[1]) or jinja2.Environment.compile(view.env, *args, **kwargs)
    assert page(view) == ours
    assert compiled == []


def test_a_served_site_is_linked_under_its_address_and_only_the_blinded_one(tmp_path, monkeypatch):
    from pipelines.definitions import build_definitions
    from pipelines.settings import DATA_DOCS_URL_ENV

    monkeypatch.setenv(DATA_DOCS_URL_ENV, "http://docs.example:3001/")
    blinded = build_definitions(str(tmp_path / "landing"), str(tmp_path / "wh" / "mirocals.duckdb"))
    warehouse = blinded.resources["warehouse"]
    page = warehouse.data_docs / "validations" / "treg" / "run 1" / "delivery-00001.html"
    assert warehouse.data_docs_link(page) == "http://docs.example:3001/validations/treg/run%201/delivery-00001.html"
    listed = tmp_path / "restricted" / "randomisation.parquet"
    unblinded = build_definitions(str(tmp_path / "landing"), str(tmp_path / "unblinded" / "u.duckdb"), str(listed))
    # an unblinded build's pages are never put under the address that serves the blinded site
    unblinded_warehouse = unblinded.resources["warehouse"]
    assert unblinded_warehouse.data_docs_url is None
    assert unblinded_warehouse.data_docs_link(page) == page.as_uri()


def test_a_new_page_lists_the_stored_results_once_for_the_index_only(tmp_path, monkeypatch):
    # GX's build_data_docs lists and parses every stored result whichever page it renders: each
    # page and each index cost more as deliveries piled up. Only the index lists them now.
    from pipelines.ingest.expectations import _results_store

    landing, warehouse = _one_treg_delivery(tmp_path)
    first = run_build(landing, warehouse)
    results = _results_store(_docs(first))
    listed = []
    list_keys = results.list_keys
    monkeypatch.setattr(results, "list_keys", lambda: listed.append(1) or list_keys())
    write_delivery(landing, "treg", "treg_batch02.parquet", [treg("S003")])
    second = run_build(landing, warehouse)
    newest = second.scalar("select max(delivery_id) from audit.delivery where family = 'treg'")
    assert list((_docs(second) / "validations" / "treg").rglob(f"delivery-{newest:05d}.html"))
    assert f"delivery-{newest:05d}.html" in (_docs(second) / "index.html").read_text()
    assert len(listed) == 1


def _treg_pages(built, delivery_id):
    return list((_docs(built) / "validations" / "treg").rglob(f"delivery-{delivery_id:05d}*.html"))


def _stored_results(built, delivery_id):
    results = built.warehouse.parent / f".{_docs(built).name}.validations"
    return list(results.rglob(f"delivery-{delivery_id:05d}*.json"))


def _raw_metadata(built):
    """The metadata of every raw asset the build materialised, by asset."""
    found = {}
    for record in built.instance.get_records_for_run(run_id=built.result.run_id, limit=100000).records:
        event = record.event_log_entry.dagster_event
        materialization = getattr(getattr(event, "event_specific_data", None), "materialization", None) if event else None
        if materialization is not None and materialization.asset_key.path[0] == "raw":
            found[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def _raw_treg_metadata(built):
    return _raw_metadata(built)["raw/treg"]


def _build_killed_in(landing, warehouse, module, function, after_calling_it, suite="treg"):
    """A build in its own process, killed (SIGKILL) when it calls ``module.function`` on results
    of ``suite``: before the call, or right after it returns."""
    script = f"""
import os, signal, sys
from pathlib import Path
import {module} as target
real = target.{function}
def killed(*args, **kwargs):
    if {suite!r} not in repr(args):
        return real(*args, **kwargs)
    if {after_calling_it!r}:
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
target.{function} = killed
from pipelines.build import build_warehouse
build_warehouse(Path(sys.argv[1]), Path(sys.argv[2]))
"""
    completed = subprocess.run([sys.executable, "-c", script, str(landing), str(warehouse)], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-3000:]


def test_a_page_a_killed_build_did_not_render_is_rendered_by_the_next(tmp_path):
    # killed after the delivery was committed and before its page was rendered: the file is taken
    # in, so no later build looks at it again; its page was lost for good
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S005", cd4=-40.0)])
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    _build_killed_in(landing, warehouse, "pipelines.ingest.expectations", "_render_validation_pages", False)
    built = run_build(landing, warehouse)
    delivery_id = built.scalar("select delivery_id from audit.delivery where family = 'treg'")
    assert built.scalar("select count(*) from audit.delivery where family = 'treg'") == 1
    assert _treg_pages(built, delivery_id)
    assert f"delivery-{delivery_id:05d}.html" in (_docs(built) / "index.html").read_text()
    # the run's first raw step settles what earlier builds left pending, of every family
    metadata = _raw_metadata(built)
    assert any(f"delivery-{delivery_id:05d}.html" in m["validation_pages"] and "left unrendered by a build that stopped"
               in m["validation_pages"] for m in metadata.values()), metadata
    assert {m["data_docs_pages_pending"] for m in metadata.values()} == {0}


def test_results_of_a_take_in_killed_before_its_commit_are_removed(tmp_path):
    # the results are stored before the commit; the kill leaves them for a delivery the warehouse
    # never recorded, whose number the next take-in is given again
    landing, warehouse = _one_treg_delivery(tmp_path)
    _build_killed_in(landing, warehouse, "pipelines.ingest.delivery", "store_validation_results", True)
    built = run_build(landing, warehouse)
    delivery_id = built.scalar("select delivery_id from audit.delivery where family = 'treg'")
    assert built.scalar("select count(*) from audit.delivery where family = 'treg'") == 1
    assert len(_stored_results(built, delivery_id)) == 1, _stored_results(built, delivery_id)
    assert len(_treg_pages(built, delivery_id)) == 1
    assert _raw_treg_metadata(built)["data_docs_pages_pending"] == 0


def test_a_page_that_cannot_be_written_waits_for_the_next_build(tmp_path, monkeypatch):
    # a full disk under the Data Docs site failed the step after the delivery was committed, and
    # its page was never rendered; the site is a report on stored data: the build goes on
    import pipelines.ingest.expectations as expectations

    landing, warehouse = _one_treg_delivery(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as full:
        full.setattr(expectations, "_render_validation_pages", disk_full)
        first = run_build(landing, warehouse)
    delivery_id = first.scalar("select delivery_id from audit.delivery where family = 'treg'")
    assert first.scalar("select status from audit.delivery where delivery_id = ?", [delivery_id]) == "accepted"
    assert not _treg_pages(first, delivery_id)
    notes = sorted(p.name for p in (warehouse.parent / f".{_docs(first).name}.pending").glob("*.json"))
    assert any(name.startswith(f"treg.delivery-{delivery_id:05d}.") for name in notes), notes
    # counted by each raw step, of every family (the last step's count is every page that failed)
    assert max(m["data_docs_pages_pending"] for m in _raw_metadata(first).values()) == len(notes)
    assert _raw_treg_metadata(first)["data_docs_pages_pending"] >= 1
    second = run_build(landing, warehouse)
    assert _treg_pages(second, delivery_id)
    assert _raw_treg_metadata(second)["data_docs_pages_pending"] == 0


def test_a_take_in_whose_results_cannot_be_stored_is_not_committed(tmp_path, monkeypatch):
    # a judgment is never committed without its results for the Data Docs site
    from pipelines.ingest.expectations import _results_store

    landing, warehouse = _one_treg_delivery(tmp_path)
    docs = warehouse.parent / f"{warehouse.stem}_data_docs"
    docs.mkdir(parents=True)
    results = _results_store(docs)
    set_result = results.set

    def disk_full_for_treg(key, value, **kwargs):
        if key.expectation_suite_identifier.name == "treg":
            raise OSError(errno.ENOSPC, "No space left on device")
        return set_result(key, value, **kwargs)

    with monkeypatch.context() as full:
        full.setattr(results, "set", disk_full_for_treg)
        first = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
    assert any("could not be stored for the Data Docs site" in detail and "No space left on device" in detail
               for details in first.check_details.values() for detail in details), first.check_details
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from audit.delivery where family = 'treg'").fetchone() == (0,)
        assert con.execute("select count(*) from audit.delivery where family = 'subjects'").fetchone() == (1,)
    assert not list((warehouse.parent / f".{docs.name}.validations" / "treg").rglob("*.json"))
    assert not list((warehouse.parent / f".{docs.name}.pending").glob("*.json"))
    second = run_build(landing, warehouse)
    assert second.scalar("select count(*) from audit.delivery where family = 'treg' and status = 'accepted'") == 1
    assert len(_treg_pages(second, second.scalar("select max(delivery_id) from audit.delivery"))) == 1


def test_a_page_whose_commit_a_stop_followed_at_once_is_rendered_by_the_next_build(tmp_path, monkeypatch):
    # a SIGTERM raised as the commit returned: the take-in is committed, and the results it
    # stored for the site were removed as if it had not been; its page was lost for good
    from dagster._core.errors import DagsterExecutionInterruptedError

    import pipelines.ingest.delivery as delivery

    landing, warehouse = _one_treg_delivery(tmp_path)
    store, atomic = delivery.store_validation_results, delivery.atomic
    armed = []

    def stored(result, *args, **kwargs):
        armed.append(result.suite == "treg")
        return store(result, *args, **kwargs)

    @contextmanager
    def stopped_as_it_commits(con):
        with atomic(con):
            yield con
        if armed and armed.pop():
            raise DagsterExecutionInterruptedError("SIGTERM as the commit returned")

    with monkeypatch.context() as stopping:
        stopping.setattr(delivery, "store_validation_results", stored)
        stopping.setattr(delivery, "atomic", stopped_as_it_commits)
        first = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
    assert not first.success
    built = run_build(landing, warehouse)
    delivery_id = built.scalar("select delivery_id from audit.delivery where family = 'treg'")
    assert built.scalar("select count(*) from audit.delivery where family = 'treg'") == 1
    assert len(_treg_pages(built, delivery_id)) == 1
    assert len(_stored_results(built, delivery_id)) == 1


def test_a_pending_page_that_cannot_be_rendered_holds_back_no_other(tmp_path, monkeypatch):
    # one page failing to render stopped the settling of every note after it (and their orphan
    # results stayed listed in the index)
    import pyarrow as pa
    import pyarrow.parquet as pq

    import pipelines.ingest.expectations as expectations
    from pipelines.study import load_contracts

    landing = tmp_path / "landing"
    path = write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003")])
    table = pq.read_table(path)
    table = table.append_column("row_number", pa.array(range(1, table.num_rows + 1), pa.int64()))
    contract = load_contracts()["treg"]
    result = expectations.validate_table("treg", table, list(contract.column_names), expectations.suite_parameters(None))
    docs = tmp_path / "wh" / "mirocals_data_docs"
    first = expectations.store_validation_results(result, docs, "delivery-00001", 1, datetime(2026, 1, 1, 9))
    second = expectations.store_validation_results(result, docs, "delivery-00002", 2, datetime(2026, 1, 1, 10))
    render = expectations._render_validation_pages

    def first_fails(docs_dir, stored):
        if any(key.batch_identifier == "delivery-00001" for key, _ in stored):
            raise RuntimeError("renderer failed")
        return render(docs_dir, stored)

    def committed(delivery_id, at):
        return delivery_id == 1  # the second take-in was never committed

    with monkeypatch.context() as failing:
        failing.setattr(expectations, "_render_validation_pages", first_fails)
        settled = expectations.settle_pending_pages(docs, committed)
    assert len(settled.waiting) == 1 and "renderer failed" in settled.waiting[0], settled
    assert settled.discarded == len(second.stored) and not settled.rendered
    assert expectations.pending_pages(docs) == [first.note]
    results = docs.parent / f".{docs.name}.validations"
    assert not list(results.rglob("delivery-00002*.json"))
    settled = expectations.settle_pending_pages(docs, committed)
    assert [page.name for page in settled.rendered] == ["delivery-00001.html"] and settled.suites == {"treg"}
    assert expectations.pending_pages(docs) == []


def test_a_build_that_cannot_look_at_the_pending_notes_still_takes_its_files_in(tmp_path, monkeypatch):
    # the pages are a report on stored data: a notes folder that cannot be listed waits, the data does not
    import pipelines.assets.deliveries as deliveries

    landing, warehouse = _one_treg_delivery(tmp_path)

    def unreadable(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "mirocals_data_docs.pending")

    with monkeypatch.context() as refused:
        refused.setattr(deliveries, "settle_pending_pages", unreadable)
        built = run_build(landing, warehouse)
    assert built.scalar("select count(*) from audit.delivery where family = 'treg' and status = 'accepted'") == 1
    warnings = [record.event_log_entry.user_message for record in
                built.instance.get_records_for_run(run_id=built.result.run_id, limit=100000).records
                if record.event_log_entry.level >= 30]
    assert any("pending by earlier builds were not looked at" in message and "Permission denied" in message
               for message in warnings), warnings
