"""One measured step of the benchmark, run in its own process by ``bench/run.py``.

    python bench/_child.py floor LANDING DATABASE OUT_JSON
    python bench/_child.py build LANDING WAREHOUSE OUT_JSON [FAMILY]

``build`` with a FAMILY runs what the landing-zone sensor runs for a new file of that family.

Each mode writes a JSON document to OUT_JSON with its own wall time (``seconds``, the work
itself, imports excluded), the process's peak resident memory (``self_maxrss_mb``) and, for a
build, the start and end of every step of the Dagster run so that the parent can attribute
time and memory to assets. The parent measures the process from outside as well
(``os.wait4`` rusage and a /proc sampler).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


def family_files(landing: Path) -> dict[str, list[Path]]:
    """Parquet files per family, found as the pipeline finds them (folder from
    schemas/deliveries.yaml, recursive, paths with a part starting with ``_`` or ``.`` ignored)."""
    import yaml

    families = yaml.safe_load((ROOT / "schemas" / "deliveries.yaml").read_text(encoding="utf-8"))["families"]
    found: dict[str, list[Path]] = {}
    for family, contract in families.items():
        folder = landing / contract["folder"].strip("/")
        if not folder.is_dir():
            continue
        files = sorted(
            p for p in folder.rglob("*.parquet")
            if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(landing).parts)
        )
        if files:
            found[family] = files
    return found


def floor(landing: Path, database: Path) -> dict:
    """Plain DuckDB: one table per family from its Parquet files, no checks."""
    import duckdb

    files = family_files(landing)
    database.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(database))
    rows = {}
    for family, paths in files.items():
        listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
        con.execute(f"create table {family} as select * from read_parquet([{listed}], union_by_name = true)")
        rows[family] = con.execute(f"select count(*) from {family}").fetchone()[0]
    con.close()  # includes the checkpoint that writes the tables to the file
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "files": {f: len(p) for f, p in files.items()},
            "self_maxrss_mb": _maxrss_mb()}


def build(landing: Path, warehouse: Path, family: str | None = None) -> dict:
    """The real asset graph, as ``mirocals build`` runs it (pipelines.build.build_warehouse), or
    with ``family`` what the landing-zone sensor's run for a new file of that family selects."""
    import dagster as dg

    from pipelines.build import build_warehouse

    instance = dg.DagsterInstance.ephemeral()
    wall_start = time.time()
    started = time.perf_counter()
    result = build_warehouse(landing, warehouse, instance=instance, family=family)
    seconds = time.perf_counter() - started
    steps: dict[str, dict] = {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for entry in instance.all_logs(result.run_id, of_type=kinds):
        event = entry.dagster_event
        step = steps.setdefault(event.step_key, {"step": event.step_key})
        if event.event_type == dg.DagsterEventType.STEP_START:
            step["start"] = entry.timestamp
        else:
            step["end"] = entry.timestamp
            step["ok"] = event.event_type == dg.DagsterEventType.STEP_SUCCESS
    return {
        "seconds": seconds,
        "wall_start": wall_start,
        "success": result.success,
        "steps_materialised": result.steps,
        "failed_checks": result.failed_checks,
        "errors": result.errors,
        "step_times": sorted(steps.values(), key=lambda s: s.get("start", 0.0)),
        "self_maxrss_mb": _maxrss_mb(),
    }


def main(argv: list[str]) -> int:
    if not (len(argv) == 4 or (len(argv) == 5 and argv[0] == "build")) or argv[0] not in ("floor", "build"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, landing, target, out = argv[0], Path(argv[1]), Path(argv[2]), Path(argv[3])
    document = floor(landing, target) if mode == "floor" else build(landing, target, *argv[4:])
    out.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    return 0 if document.get("success", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
