"""The study definition as warehouse reference tables."""

import getpass
from pathlib import Path

import dagster as dg

from pipelines.ingest.delivery import file_sha256
from pipelines.resources import Blinding, Warehouse
from pipelines.warehouse import (
    apply_comments, atomic, create_raw_tables, has_table, load_reference_tables, run_ddl, utc_now,
)


@dg.asset(key=["ref", "study_definition"], group_name="reference", kinds={"duckdb", "yaml"})
def study_definition(warehouse: Warehouse, blinding: Blinding) -> dg.MaterializeResult:
    """Sites, arms, visits and parameters from schemas/study.yaml, written to the ref schema.

    Also makes sure the raw, audit and quarantine structures exist. A blinded build's ref.arm
    holds the masked arms; an unblinded build records the unblinding in audit.unblinding.
    """
    mode = blinding.mode
    with warehouse.connect() as con, atomic(con):
        # a blinded warehouse from before withholdings were recorded may have withheld values
        # that its freed blocks still hold: it is written anew at its next publish, once
        earlier = mode.blinded and has_table(con, "audit", "delivery") and not has_table(con, "audit", "withholding")
        run_ddl(con, "audit")
        if earlier:
            con.execute("insert into audit.withholding values (0, 'every family', 0, ?, null)",
                        [utc_now()])
        for table in ("delivery", "validation", "row_failure", "withholding"):
            apply_comments(con, "audit", table)
        run_ddl(con, "macros")
        create_raw_tables(con)
        counts = load_reference_tables(con, mode.arms(), mode.withheld_columns())
        if not mode.blinded:
            run_ddl(con, "unblinding")
            listed = Path(mode.randomisation_file).resolve()
            con.execute(
                "insert into audit.unblinding values (?, ?, ?, ?)",
                [utc_now(), getpass.getuser(), str(listed), file_sha256(listed)],
            )
    return dg.MaterializeResult(metadata={f"ref.{name}": dg.MetadataValue.int(n) for name, n in counts.items()})
