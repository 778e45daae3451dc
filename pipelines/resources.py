"""Dagster resources: the landing zone and the DuckDB warehouse."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from pipelines.blinding import BlindingMode, MixedBlinding, refuse_other_blinding
from pipelines.locking import BuildLock
from pipelines.stopping import StopRequests
from pipelines.warehouse import (
    copy_durably, held_by_another_writer, lock_file, open_for_writing, publish, remove_unfinished_copies,
    settle_digest_key, temporary_copy, work_file,
)


class LandingZone(dg.ConfigurableResource):
    """The folder where deliveries arrive (``schemas/deliveries.yaml`` names its sub-folders)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path).resolve()


class Blinding(dg.ConfigurableResource):
    """A blinded build: masked arms, treatment-revealing values withheld. It has nothing to
    configure, so a run launched from the UI or ``dagster job execute`` cannot name a
    randomisation list (run config that tries is refused)."""

    @property
    def mode(self) -> BlindingMode:
        return BlindingMode(None)


class Unblinding(Blinding):
    """An unblinded build, made only by ``mirocals unblind`` (pipelines/build.py) with the real
    randomisation list; never part of the code location the UI and daemon load."""

    randomisation_file: str

    @property
    def mode(self) -> BlindingMode:
        return BlindingMode(self.randomisation_file)


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse. ``database`` is the published file analysts open; a run writes
    its work copy under the build lock and the publish asset swaps it in atomically."""

    database: str
    blinding: Blinding
    # the address that serves :attr:`data_docs` (None: pages are linked as files)
    data_docs_url: str | None = None
    _lock: BuildLock | None = PrivateAttr(default=None)
    _con: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    _digest_key: bytes | None = PrivateAttr(default=None)
    _stops: StopRequests | None = PrivateAttr(default=None)

    @property
    def file(self) -> Path:
        return Path(self.database).resolve()

    @property
    def work_file(self) -> Path:
        return work_file(self.file)

    def digest_key(self) -> bytes | None:
        """The key of the file digests this warehouse records (blinded warehouses), or None;
        made, and the digests recorded before keyed, by the first build that asks (see
        :func:`pipelines.warehouse.settle_digest_key`)."""
        if not self.blinding.mode.blinded:
            return None
        if self._digest_key is None:
            with self.connect() as con:
                self._digest_key = settle_digest_key(con, self.file)
        return self._digest_key

    @property
    def owner_only(self) -> bool:
        """An unblinded warehouse is readable by its owner only."""
        return not self.blinding.mode.blinded

    @property
    def data_docs(self) -> Path:
        """The Great Expectations Data Docs site of this warehouse (beside the published file)."""
        return self.file.parent / f"{self.file.stem}_data_docs"

    def data_docs_link(self, page: Path) -> str:
        """The link to a page of the Data Docs site: under :attr:`data_docs_url` when the site is
        served, else the file's own URI."""
        if self.data_docs_url is None:
            return page.as_uri()
        return f"{self.data_docs_url.rstrip('/')}/{quote(page.relative_to(self.data_docs).as_posix())}"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Held for the whole run: a second build (UI or command line) stops with a clear message.
        self._lock = BuildLock(lock_file(self.file))
        self._lock.acquire()
        self._stops = StopRequests()
        self._stops.watch()
        # copies a killed build left half-written (no other build is copying: this one holds the lock)
        for left in remove_unfinished_copies(self.file, self.work_file):
            context.log.warning(f"removed {left}, an unfinished copy a stopped build left")

    def stop_if_asked(self, what_is_not_done: str) -> None:
        """Fail the step if the run was asked to stop (SIGTERM, SIGINT) since it started, whatever
        became of Dagster's interruption (pipelines/stopping.py)."""
        if self._stops is not None and self._stops.requested():
            raise dg.Failure(description=f"{what_is_not_done}: the build was asked to stop (SIGTERM or SIGINT) "
                             "while it ran. What it took in stays in the work copy; the next build goes on from there.")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._stops is not None:
            self._stops.close()
            self._stops = None
        self._close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The work copy, open for writing. One connection serves a whole run: closing DuckDB
        after a large load costs seconds, and it would be paid by every asset. A step that opens
        it after the run was asked to stop fails at once."""
        self.stop_if_asked("Not done")
        if self._con is None:
            if self.file.exists():
                # the published file too, before anything is changed: the build would publish over it
                self._refuse_other_blinding_of_published()
            if self.owner_only:
                self.work_file.parent.mkdir(parents=True, exist_ok=True)
                self.work_file.parent.chmod(0o700)
                self.file.parent.chmod(0o700)
            if self.file.exists() and not self.work_file.exists():
                # the work copy was lost (cleaned up, or the published file moved here): carry
                # on from the published warehouse, never from nothing, which would drop the
                # deliveries whose files have left the landing zone and renumber the others.
                # Copied under another name, then renamed: a copy cut short is never taken for it.
                self.work_file.parent.mkdir(parents=True, exist_ok=True)
                seeding = temporary_copy(self.work_file, "seeding")
                copy_durably(self.file, seeding, self.owner_only)
                os.replace(seeding, self.work_file)
            con = open_for_writing(self.work_file)
            try:
                refuse_other_blinding(con, self.blinding.mode, self.file)
            except MixedBlinding:
                con.close()
                raise
            self._con = con
        else:
            # a step before may have left a read unfinished (fetchone reads one row); DuckDB
            # refuses relation queries on the connection until that result is run to its end
            self._con.complete()
        yield self._con

    def _refuse_other_blinding_of_published(self) -> None:
        """:func:`refuse_other_blinding` on the published file, or on a copy of it while an
        analyst holds it open read-write (DuckDB then refuses any other connection; a plain
        copy reads it, and the build replaces the file by a rename, which the lock does not stop)."""
        try:
            with closing(duckdb.connect(str(self.file), read_only=True)) as published:
                refuse_other_blinding(published, self.blinding.mode, self.file)
            return
        except duckdb.IOException as error:
            if not held_by_another_writer(error):
                raise
        self.work_file.parent.mkdir(parents=True, exist_ok=True)
        probe = temporary_copy(self.work_file, "seeding")
        try:
            copy_durably(self.file, probe, owner_only=True)
            with closing(duckdb.connect(str(probe), read_only=True)) as published:
                refuse_other_blinding(published, self.blinding.mode, self.file)
        finally:
            probe.unlink(missing_ok=True)

    def publish(self) -> None:
        """Swap the work copy in as the published warehouse."""
        self._close()
        publish(self.work_file, self.file, owner_only=self.owner_only)
