import dagster as dg

from pipelines.assets.models import MODELS
from pipelines.resources import Warehouse

# Every model that nothing else depends on: when they are built, the warehouse is complete.
LEAVES = [
    dg.AssetKey([m.layer, m.name])
    for m in MODELS
    if not any(m.key in other.deps for other in MODELS)
]


@dg.asset(key=["publish", "warehouse"], group_name="publish", kinds={"duckdb"}, deps=LEAVES)
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
