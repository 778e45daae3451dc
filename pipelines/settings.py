"""Where the landing zone and the warehouse live: the one place that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.study import PROJECT_ROOT

LANDING_ENV = "MIROCALS_LANDING"
WAREHOUSE_ENV = "MIROCALS_WAREHOUSE"
SENSOR_INTERVAL_ENV = "MIROCALS_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL_SECONDS = 15
# Where the blinded warehouse's Data Docs site is served over HTTP (`make ui` serves it): links in
# the UI then open. Unset, they are file:// links, which a browser does not follow from the UI.
DATA_DOCS_URL_ENV = "MIROCALS_DATA_DOCS_URL"

DEFAULT_LANDING = PROJECT_ROOT / "landing"
DEFAULT_WAREHOUSE = PROJECT_ROOT / "warehouse" / "build" / "mirocals.duckdb"
# Unblinded builds never share a file or folder with blinded ones.
UNBLINDED_WAREHOUSE_ENV = "MIROCALS_UNBLINDED_WAREHOUSE"
DEFAULT_UNBLINDED_WAREHOUSE = PROJECT_ROOT / "warehouse" / "build" / "unblinded" / "mirocals_unblinded.duckdb"


@dataclass(frozen=True)
class Settings:
    landing: Path
    warehouse: Path
    unblinded_warehouse: Path
    sensor_interval_seconds: int
    data_docs_url: str | None


def get_settings(
    landing: str | Path | None = None,
    warehouse: str | Path | None = None,
    unblinded_warehouse: str | Path | None = None,
) -> Settings:
    """Resolve paths: explicit argument, then environment variable, then the project default."""
    return Settings(
        landing=Path(landing or os.environ.get(LANDING_ENV) or DEFAULT_LANDING).resolve(),
        warehouse=Path(warehouse or os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE).resolve(),
        unblinded_warehouse=Path(
            unblinded_warehouse or os.environ.get(UNBLINDED_WAREHOUSE_ENV) or DEFAULT_UNBLINDED_WAREHOUSE
        ).resolve(),
        sensor_interval_seconds=int(os.environ.get(SENSOR_INTERVAL_ENV) or DEFAULT_SENSOR_INTERVAL_SECONDS),
        data_docs_url=os.environ.get(DATA_DOCS_URL_ENV) or None,
    )
