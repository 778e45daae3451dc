"""The Dagster code location: every asset, check, resource and job of the warehouse."""

from __future__ import annotations

import dagster as dg

from pipelines.assets.deliveries import raw_assets
from pipelines.assets.models import model_assets
from pipelines.assets.analysis import analysis_assets
from pipelines.assets.publish import build_publish_asset
from pipelines.assets.reference import study_definition
from pipelines.resources import LandingZone, Warehouse
from pipelines.settings import get_settings

BUILD_JOB = "build_warehouse"
ASSETS = [study_definition, *raw_assets, *model_assets, *analysis_assets]


def build_definitions(landing: str | None = None, warehouse: str | None = None) -> dg.Definitions:
    """Definitions bound to a landing zone and warehouse file (defaults from the environment)."""
    settings = get_settings(landing, warehouse)
    return dg.Definitions(
        assets=[*ASSETS, build_publish_asset(ASSETS)],
        jobs=[dg.define_asset_job(BUILD_JOB, selection=dg.AssetSelection.all(), description="Take in new deliveries and rebuild every table.")],
        resources={
            "landing": LandingZone(path=str(settings.landing)),
            "warehouse": Warehouse(database=str(settings.warehouse)),
        },
        # DuckDB allows one writer per file: steps of a run execute one after another.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
