import dagster as dg

from pipelines.assets.automation import downstream_keys
from pipelines.resources import Warehouse

PUBLISH_KEY = dg.AssetKey(["publish", "warehouse"])


def not_rebuilt(selected: set[dg.AssetKey], assets: list[dg.AssetsDefinition]) -> list[dg.AssetKey]:
    """Tables built from what a run with ``selected`` takes in or rebuilds, that it does not
    rebuild (a run selected by hand: raw/treg and publish, without the tables made from raw/treg).
    Other families' raw assets are not among them: a run for one family's new file leaves the
    other landing folders alone, and a changed rule reaches a family at its raw asset's next run."""
    stale = {key for start in selected for key in downstream_keys(assets, start) if key.path[0] != "raw"}
    return sorted(stale - selected - {PUBLISH_KEY}, key=lambda key: key.to_user_string())


def build_publish_asset(upstream: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The publish asset, downstream of every other asset so it runs last."""
    keys = [key for assets_def in upstream for key in assets_def.keys]

    @dg.asset(key=PUBLISH_KEY, group_name="publish", kinds={"duckdb"}, deps=keys)
    def published_warehouse(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """Publish the built warehouse: copy the work file and rename it over the published file.

        Analysts only ever open the published file, so they never see a half-built warehouse.
        Runs only when every table is built and the reconciliation check (blocking) passed; a
        run that leaves tables built from its changes unbuilt, or that follows one stopped after
        taking files in, publishes nothing.
        """
        # the run's selection (None: the whole job)
        selection = context.run.asset_selection
        stale = not_rebuilt(set(selection), upstream) if selection else []
        if stale:
            raise dg.Failure(
                description=f"Not published: this run does not rebuild {', '.join(k.to_user_string() for k in stale)}, "
                "which are built from what it takes in or rebuilds; run the whole build_warehouse job.")
        with warehouse.connect() as con:
            behind = [name for name, in con.execute(
                "select file_name from audit.delivery where delivery_id not in "
                "(select delivery_id from audit.reconciliation) order by delivery_id").fetchall()]
        if behind:
            raise dg.Failure(
                description=f"Not published: {len(behind)} deliveries were taken in after the tables were built "
                f"({', '.join(behind[:5])}{', ...' if len(behind) > 5 else ''}); run the whole build_warehouse job.")
        warehouse.stop_if_asked("Not published")
        warehouse.publish()
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(warehouse.file)),
                "size_mb": round(warehouse.file.stat().st_size / 1e6, 1),
            }
        )

    return published_warehouse
