import dagster as dg

from pipelines.resources import Warehouse


def build_publish_asset(upstream: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The publish asset, downstream of every other asset so it runs last."""
    keys = [key for assets_def in upstream for key in assets_def.keys]

    @dg.asset(key=["publish", "warehouse"], group_name="publish", kinds={"duckdb"}, deps=keys)
    def published_warehouse(warehouse: Warehouse) -> dg.MaterializeResult:
        """Publish the built warehouse: copy the work file and rename it over the published file.

        Analysts only ever open the published file, so they never see a half-built warehouse.
        Runs only when every table is built and the reconciliation check (blocking) passed.
        """
        warehouse.publish()
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(warehouse.file)),
                "size_mb": round(warehouse.file.stat().st_size / 1e6, 1),
            }
        )

    return published_warehouse
