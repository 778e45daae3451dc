"""The Dagster code location: every asset, check, resource and job of the warehouse."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.assets.deliveries import raw_assets, unrecognised_landing_files
from pipelines.assets.models import model_assets
from pipelines.assets.analysis import analysis_assets
from pipelines.assets.automation import build_delivery_sensor, build_nightly_schedule
from pipelines.assets.publish import build_publish_asset
from pipelines.assets.reference import study_definition
from pipelines.resources import Blinding, LandingZone, Unblinding, Warehouse
from pipelines.settings import get_settings

BUILD_JOB = "build_warehouse"
ASSETS = [study_definition, *raw_assets, unrecognised_landing_files, *model_assets, *analysis_assets]


def build_definitions(
    landing: str | None = None, warehouse: str | None = None, randomisation_file: str | None = None
) -> dg.Definitions:
    """Definitions bound to a landing zone and warehouse file (defaults from the environment).

    Blinded unless ``randomisation_file`` names the real list; an unblinded build writes its own
    warehouse file (owner-only), never the blinded one.
    """
    unblinded = randomisation_file is not None
    if unblinded:
        defaults = get_settings(landing)
        warehouse = warehouse or str(defaults.unblinded_warehouse)
        if Path(warehouse).resolve() == defaults.warehouse:
            raise ValueError(f"An unblinded build cannot write the blinded warehouse {defaults.warehouse}")
    settings = get_settings(landing, warehouse)
    blinding = Unblinding(randomisation_file=str(Path(randomisation_file).resolve())) if unblinded else Blinding()
    assets = [*ASSETS, build_publish_asset(ASSETS)]
    job = dg.define_asset_job(
        BUILD_JOB, selection=dg.AssetSelection.all(), description="Take in new deliveries and rebuild every table."
    )
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        sensors=[build_delivery_sensor(job, settings.landing, settings.warehouse, assets, settings.sensor_interval_seconds)],
        schedules=[build_nightly_schedule(job)],
        resources={
            "landing": LandingZone(path=str(settings.landing)),
            # only the blinded site is served (an unblinded build's pages stay files, owner-only)
            "warehouse": Warehouse(database=str(settings.warehouse), blinding=blinding,
                                   data_docs_url=None if unblinded else settings.data_docs_url),
            "blinding": blinding,
        },
        # DuckDB allows one writer per file: steps of a run execute one after another.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
