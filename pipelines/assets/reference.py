"""The study definition as warehouse reference tables."""


import dagster as dg

from pipelines.resources import Warehouse
from pipelines.warehouse import create_raw_tables, load_reference_tables, run_ddl


@dg.asset(key=["ref", "study_definition"], group_name="reference", kinds={"duckdb", "yaml"})
def study_definition(warehouse: Warehouse) -> dg.MaterializeResult:
    """Sites, arms, visits and parameters from schemas/study.yaml, written to the ref schema.

    Also makes sure the raw, audit and quarantine structures exist.
    """
    with warehouse.connect() as con:
        run_ddl(con, "audit")
        run_ddl(con, "macros")
        create_raw_tables(con)
        counts = load_reference_tables(con)
    return dg.MaterializeResult(metadata={f"ref.{name}": dg.MetadataValue.int(n) for name, n in counts.items()})
