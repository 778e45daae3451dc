"""Dagster resources: the landing zone and the DuckDB warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.warehouse import write_connection


class LandingZone(dg.ConfigurableResource):
    """The folder where deliveries arrive (``schemas/deliveries.yaml`` names its sub-folders)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path).resolve()


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file written by the pipeline."""

    database: str

    @property
    def file(self) -> Path:
        return Path(self.database).resolve()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with write_connection(self.file) as con:
            yield con
