"""Benchmark of the MIROCALS warehouse build: generation, floor, full build, incremental build,
analyst queries and peak memory, in one run. See bench/README.md.

    .venv/bin/python bench/run.py --scale 1            # or: make bench SCALE=1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from _child import family_files  # noqa: E402

# Targets: name -> (limit, human-readable form). Every figure must be <= its limit.
TARGETS = {
    "ratio_full_to_floor": (4.0, "<= 4x floor"),
    "incremental_to_full": (0.05, "<= 5% of full"),
    "peak_rss_mb": (4096.0, "<= 4096 MB"),
    "incremental_peak_rss_mb": (4096.0, "<= 4096 MB"),
    "query_ms": (200.0, "<= 200 ms"),
    # Peak memory must not grow with the number of deliveries: over the incremental build and the
    # --pileup builds after it (each takes in one more delivery per lab family), the fitted
    # growth of peak RSS stays within what identical runs differ by.
    "pileup_rss_growth_pct": (10.0, "<= 10% over the rounds"),
}

LAB_FAMILIES = ("treg", "neurofilament", "transcript_gene", "transcript_summary")
# Re-delivery of a few rows of the first batch of each lab family, with a few values changed
# (a correction): column changed, how, and on how many rows.
REDELIVERY_TWEAKS = {
    "treg": ("treg_count", "multiply", 0.99),
    "neurofilament": ("cv_pct", "add", 0.5),
    "transcript_gene": ("expression", "add", 0.01),
    "transcript_summary": ("total_reads_m", "multiply", 1.01),
}
REDELIVERY_ROWS = 25            # rows per small family re-delivered
REDELIVERY_SAMPLES = 1          # transcript_gene: all genes of this many samples
REDELIVERY_CHANGED = 3          # rows whose value changes
ROUND_NUDGE = 1e-6              # added to the changed values once per pile-up round
REDELIVERY_NAME = "{family}_batch99_bench_redelivery.parquet"
PILEUP_NAME = "{family}_batch99_bench_pileup{round:02d}.parquet"
SINGLE_NAME = "{family}_batch99_bench_single.parquet"
# The round of the deliveries that arrive one at a time (one run each, as the sensor runs them):
# another batch (the last), other rows and a nudge that no pile-up round (0, 1, 2...) repeats.
SINGLE_ROUND = -1
BENCH_FILE_MARK = "_bench_"  # in the names of the files the benchmark adds

QUERY_REPEATS = 7
PREFERRED_GENE = "CD4"
QUERIES = {
    "adbm_param_visit_by_arm": (
        "select TRTP, avg(AVAL), count(*) from analysis.adbm "
        "where PARAMCD = 'NFLS' and AVISIT = 'M3' and ANL01FL = 'Y' group by TRTP"
    ),
    "adgene_gene_by_visit": "select AVISIT, TRTP, avg(AVAL) from analysis.adgene where GENESYM = ? group by all",
    # beyond the three: the gene's change from baseline, a window over the subject's rows of it
    "adgene_change_gene_by_visit": (
        "select AVISIT, TRTP, avg(CHG) from analysis.adgene_change where GENESYM = ? group by all"
    ),
    "reconciliation": "select * from audit.reconciliation",
}


# --------------------------------------------------------------------------------------------
# child processes, measured from outside


@dataclass
class Measured:
    """A child process: its own report plus what the parent saw."""

    report: dict
    process_s: float
    maxrss_mb: float
    samples: list[tuple[float, float]] = field(default_factory=list)  # (epoch, RSS MB)
    returncode: int = 0


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    return None


def run_child(mode: str, landing: Path, target: Path, work: Path, label: str, max_rss_mb: float = 0,
              extra: tuple[str, ...] = ()) -> Measured:
    """Run ``bench/_child.py`` in a fresh interpreter; peak RSS from its rusage (os.wait4).

    With ``max_rss_mb``, the child is stopped (SIGTERM) as soon as its sampled RSS exceeds it.
    """
    work.mkdir(parents=True, exist_ok=True)
    # Each step starts once the files written before it are on disk: otherwise a build's own
    # fsync (publishing) waits behind the write-back of the step before it (the floor's database,
    # the full build's warehouse and its published copy, 1 GB or more), which a delivery arriving
    # hours after the last build does not. Measured: publishing in the incremental build took
    # 1.3 to 1.9 s right after the full build, 0.6 s after a sync.
    os.sync()
    out_json = work / f"{label}.json"
    log = work / f"{label}.log"
    samples: list[tuple[float, float]] = []
    exceeded: list[float] = []
    done = threading.Event()
    started = time.perf_counter()
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / "_child.py"), mode, str(landing), str(target), str(out_json), *extra],
            stdout=handle, stderr=subprocess.STDOUT, cwd=str(ROOT),
        )

        def sample() -> None:
            while not done.is_set():
                rss = _rss_mb(proc.pid)
                if rss is not None:
                    samples.append((time.time(), rss))
                    if max_rss_mb and rss > max_rss_mb and not exceeded:
                        exceeded.append(rss)
                        proc.terminate()
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            done.set()
            sampler.join()
            if proc.returncode is None:  # interrupted: do not leave the child running
                proc.kill()
                proc.wait()
    process_s = time.perf_counter() - started
    # ru_maxrss: KiB on Linux, bytes on macOS.
    maxrss_mb = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    if exceeded:
        raise RuntimeError(f"{label} stopped: RSS {exceeded[0]:,.0f} MB exceeded --max-rss-mb {max_rss_mb:,.0f} "
                           f"(peak {maxrss_mb:,.0f} MB); log {log}")
    if not out_json.exists():
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{label} failed (exit {proc.returncode}); log {log}:\n{tail}")
    report = json.loads(out_json.read_text(encoding="utf-8"))
    return Measured(report, process_s, maxrss_mb, samples, proc.returncode)


def run_build(landing: Path, warehouse: Path, logs: Path, label: str, what: str, max_rss_mb: float = 0,
              family: str | None = None) -> Measured:
    """One build in its own process (``run_child``); a failed build stops the benchmark, naming
    ``what`` failed and its log. With ``family``, the sensor's run for a new file of that family."""
    measured = run_child("build", landing, warehouse, logs, label, max_rss_mb, (family,) if family else ())
    if not measured.report.get("success"):
        raise RuntimeError(f"{what} failed: {measured.report.get('errors')} (log {logs / f'{label}.log'})")
    return measured


def _step_seconds(measured: Measured, step: str) -> float | None:
    return next((s["seconds"] for s in step_profile(measured) if s["step"] == step), None)


def step_profile(measured: Measured) -> list[dict]:
    """Seconds and sampled peak RSS of every step of a build, slowest first."""
    rows = []
    for step in measured.report.get("step_times", []):
        start, end = step.get("start"), step.get("end")
        if start is None or end is None:
            continue
        during = [rss for t, rss in measured.samples if start - 0.05 <= t <= end + 0.05]
        rows.append({"step": step["step"], "seconds": round(end - start, 3),
                     "peak_rss_mb": round(max(during), 1) if during else None, "ok": step.get("ok", False)})
    return sorted(rows, key=lambda r: r["seconds"], reverse=True)


# --------------------------------------------------------------------------------------------
# the incremental delivery


def write_redeliveries(landing: Path, round_: int = 0, families: tuple[str, ...] = LAB_FAMILIES) -> list[dict]:
    """One new small delivery per lab family (of ``families``): rows of one of its batches, a few
    values changed.

    Round 0 is the incremental build's delivery (the first rows, or the first sample, of the first
    batch); each later round (``--pileup``) re-delivers other rows of another batch, so that
    deliveries pile up in the warehouse one round after another. ``SINGLE_ROUND`` is the
    deliveries that arrive one at a time.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = family_files(landing)
    written = []
    for family in families:
        batches = [p for p in files.get(family, []) if BENCH_FILE_MARK not in p.name]
        if not batches:
            raise RuntimeError(f"no {family} delivery in {landing} to re-deliver")
        source = batches[round_ % len(batches)]
        table = pq.read_table(source)
        if family == "transcript_gene":
            samples = pc.unique(table["sample_id"])
            first = round_ % max(1, len(samples) - REDELIVERY_SAMPLES + 1)
            table = table.filter(pc.is_in(table["sample_id"], value_set=samples[first:first + REDELIVERY_SAMPLES]))
        else:
            first = (round_ * REDELIVERY_ROWS) % max(1, table.num_rows - REDELIVERY_ROWS + 1)
            table = table.slice(first, REDELIVERY_ROWS)
        column, how, amount = REDELIVERY_TWEAKS[family]
        index = table.column_names.index(column)
        values = table[column]
        changed = pa.array(np.arange(table.num_rows) < REDELIVERY_CHANGED)
        new = pc.multiply(values, amount) if how == "multiply" else pc.add(values, amount)
        # a millionth more each round: once the rounds have gone through every batch and slice, a
        # round would otherwise send earlier bytes again, a duplicate that costs a build less
        new = pc.add(new, round_ * ROUND_NUDGE)
        table = table.set_column(index, column, pc.if_else(changed, new, values))
        name = {0: REDELIVERY_NAME, SINGLE_ROUND: SINGLE_NAME}.get(round_, PILEUP_NAME)
        target = source.parent / name.format(family=family, round=round_)
        pq.write_table(table, target, compression="zstd")
        written.append({"family": family, "file": target.relative_to(landing).as_posix(),
                        "from": source.relative_to(landing).as_posix(), "rows": table.num_rows,
                        "changed_rows": min(REDELIVERY_CHANGED, table.num_rows), "column_changed": column})
    return written


def growth(values: list[float]) -> tuple[float, float]:
    """Least-squares slope of ``values`` per round, and the growth it makes over all rounds as a
    percentage of their mean (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0, 0.0
    slope = statistics.linear_regression(range(len(values)), values).slope
    return slope, 100 * slope * (len(values) - 1) / statistics.mean(values)


# --------------------------------------------------------------------------------------------
# analyst queries


def _delivery_count(warehouse: Path) -> int:
    """Deliveries recorded in the published warehouse (every family, refused files included)."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select count(*) from audit.delivery").fetchone()[0]


def time_queries(warehouse: Path, repeats: int = QUERY_REPEATS) -> tuple[dict, dict, str]:
    """Median (and first-run) milliseconds of each analyst query, on a read-only connection."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        present = con.execute(
            "select count(*) from analysis.adgene where GENESYM = ? and AVAL is not null", [PREFERRED_GENE]
        ).fetchone()[0]
        gene = PREFERRED_GENE if present else con.execute(
            "select GENESYM from analysis.adgene where AVAL is not null order by GENESYM limit 1"
        ).fetchone()[0]
        medians, first = {}, {}
        for name, sql in QUERIES.items():
            params = [gene] if "?" in sql else []
            times = []
            for _ in range(repeats + 1):
                started = time.perf_counter()
                con.execute(sql, params).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            first[name] = round(times[0], 2)
            medians[name] = round(statistics.median(times[1:]), 2)
    finally:
        con.close()
    return medians, first, gene


# --------------------------------------------------------------------------------------------
# machine, report


def machine_info() -> dict:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**2
    except (ValueError, OSError, AttributeError):
        total = None

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "total_memory_mb": round(total) if total else None,
        "python": platform.python_version(),
        "duckdb": version("duckdb"),
        "dagster": version("dagster"),
        "great_expectations": version("great-expectations"),
    }


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 2)


def evaluate_targets(results: dict) -> dict:
    targets = {}
    names = ["ratio_full_to_floor", "incremental_to_full", "peak_rss_mb", "incremental_peak_rss_mb"]
    if len(results["pileup"]) > 1:
        names.append("pileup_rss_growth_pct")
    for name in names:
        limit, text = TARGETS[name]
        targets[name] = {"value": results[name], "limit": limit, "target": text, "pass": results[name] <= limit}
    limit, text = TARGETS["query_ms"]
    for query, ms in results["query_ms"].items():
        targets[f"query_ms.{query}"] = {"value": ms, "limit": limit, "target": text, "pass": ms <= limit}
    return targets


def print_report(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    targets = results["targets"]

    def verdict(name: str) -> str:
        if name not in targets:
            return ""
        return "[green]pass[/green]" if targets[name]["pass"] else "[red]FAIL[/red]"

    def target(name: str) -> str:
        return targets[name]["target"] if name in targets else ""

    table = Table(title=f"MIROCALS benchmark: scale {results['scale']}, {results['genes']:,} genes "
                        f"({results['landing']['rows_total']:,} rows, {results['landing']['mb']} MB Parquet)")
    for column in ("measure", "value", "target", "result"):
        table.add_column(column, justify="right" if column == "value" else "left")
    rows = [
        ("generation", f"{results['generation_s']:.2f} s", None),
        ("floor (plain DuckDB load)", f"{results['floor_s']:.2f} s", None),
        ("full build (asset graph)", f"{results['full_build_s']:.2f} s", None),
        ("  full build process incl. start-up", f"{results['full_build_process_s']:.2f} s", None),
        ("full / floor", f"{results['ratio_full_to_floor']:.2f} x", "ratio_full_to_floor"),
        ("incremental build (4 small deliveries)", f"{results['incremental_s']:.2f} s", None),
        ("incremental / full", f"{results['incremental_to_full']:.1%}", "incremental_to_full"),
        *[(f"  one {family} delivery alone (sensor run)",
           f"{seconds:.2f} s ({results['single_delivery_to_full'][family]:.1%})", None)
          for family, seconds in results["single_delivery_s"].items()],
        ("build with nothing new", f"{results['unchanged_build_s']:.2f} s ({results['unchanged_to_full']:.1%})", None),
        ("  publish step: full / incremental / nothing new",
         " / ".join(f"{results['publish_s'][k]:.2f}" for k in ("full", "incremental", "unchanged")) + " s", None),
        ("peak RSS, full build", f"{results['peak_rss_mb']:,.0f} MB", "peak_rss_mb"),
        ("peak RSS, incremental build", f"{results['incremental_peak_rss_mb']:,.0f} MB", "incremental_peak_rss_mb"),
        ("peak RSS, build with nothing new", f"{results['unchanged_peak_rss_mb']:,.0f} MB", None),
        ("peak RSS, floor", f"{results['floor_peak_rss_mb']:,.0f} MB", None),
    ]
    if len(results["pileup"]) > 1:
        pileup = results["pileup"]
        rows += [
            (f"pile-up: {len(pileup)} builds, {pileup[0]['deliveries']} to {pileup[-1]['deliveries']} deliveries",
             " / ".join(f"{r['seconds']:.1f}" for r in pileup) + " s", None),
            ("  build time: fitted growth over the rounds",
             f"{results['pileup_seconds_slope']:+.2f} s per round ({results['pileup_seconds_growth_pct']:+.0f}%)", None),
            ("  peak RSS: " + " / ".join(f"{r['peak_rss_mb']:,.0f}" for r in pileup) + " MB",
             f"{results['pileup_rss_slope_mb']:+.0f} MB per round ({results['pileup_rss_growth_pct']:+.1f}%)",
             "pileup_rss_growth_pct"),
        ]
    for name, ms in results["query_ms"].items():
        rows.append((f"query {name} (median of {QUERY_REPEATS})", f"{ms:.1f} ms", f"query_ms.{name}"))
    for label, value, name in rows:
        table.add_row(label, value, target(name) if name else "", verdict(name) if name else "")
    console.print(table)

    for key, title in (("full_build_steps", "Full build: slowest steps"),
                       ("incremental_steps", "Incremental build: slowest steps")):
        steps = Table(title=title)
        for column in ("step", "seconds", "share", "peak RSS (sampled)"):
            steps.add_column(column, justify="left" if column == "step" else "right")
        total = sum(s["seconds"] for s in results[key]) or 1.0
        for step in results[key][:10]:
            rss = f"{step['peak_rss_mb']:,.0f} MB" if step["peak_rss_mb"] is not None else "-"
            steps.add_row(step["step"], f"{step['seconds']:.2f}", f"{step['seconds'] / total:.0%}", rss)
        console.print(steps)
    machine = results["machine"]
    console.print(f"{machine['platform']}, {machine['cpu_count']} CPUs, {machine['total_memory_mb']:,} MB; "
                  f"duckdb {machine['duckdb']}, dagster {machine['dagster']}. "
                  f"{'All targets met.' if results['all_targets_pass'] else 'Some targets missed.'}")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scale", type=float, default=5.0, help="Scale of the synthetic landing zone (1 = the trial).")
    parser.add_argument("--genes", type=int, default=20000, help="Genes per RNA-seq sample.")
    parser.add_argument("--seed", type=int, default=20170615, help="Seed of the synthetic landing zone.")
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="Folder for the generated data and warehouses.")
    parser.add_argument("--results", type=Path, default=BENCH / "results.json", help="Where to write the results JSON.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated landing zone and warehouses.")
    parser.add_argument("--strict", action="store_true", help="Exit with status 1 when a target is missed.")
    parser.add_argument("--max-rss-mb", type=float, default=0,
                        help="Stop a build whose resident memory exceeds this (0: no limit), to protect a shared machine.")
    parser.add_argument("--pileup", type=int, default=5,
                        help="Builds after the incremental one, each taking in one more delivery per lab family, "
                             "to see whether time and memory grow with the number of deliveries (0: none).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console()
    stamp = datetime.now(UTC)
    run_dir = args.out.resolve() / f"scale{args.scale:g}-genes{args.genes}-{stamp:%Y%m%dT%H%M%S}-{os.getpid()}"
    landing = run_dir / "landing"
    logs = run_dir / "logs"
    warehouse = run_dir / "warehouse" / "mirocals.duckdb"
    failed = True
    try:
        console.print(f"[bold]bench[/bold] scale {args.scale:g}, {args.genes:,} genes, seed {args.seed} -> {run_dir}")

        from pipelines.synth import generate_landing_zone

        started = time.perf_counter()
        generate_landing_zone(landing, seed=args.seed, scale=args.scale, genes=args.genes)
        generation_s = time.perf_counter() - started
        console.print(f"  generated in {generation_s:.2f} s ({folder_mb(landing)} MB)")

        floor = run_child("floor", landing, run_dir / "floor" / "floor.duckdb", logs, "floor", args.max_rss_mb)
        console.print(f"  floor {floor.report['seconds']:.2f} s")

        full = run_build(landing, warehouse, logs, "full_build", "full build", args.max_rss_mb)
        console.print(f"  full build {full.report['seconds']:.2f} s, peak RSS {full.maxrss_mb:,.0f} MB")
        warehouse_full_mb = round(warehouse.stat().st_size / 1e6, 2)

        redeliveries = write_redeliveries(landing)
        incremental = run_build(landing, warehouse, logs, "incremental_build", "incremental build", args.max_rss_mb)
        console.print(f"  incremental build {incremental.report['seconds']:.2f} s, peak RSS {incremental.maxrss_mb:,.0f} MB")

        # The same build again with nothing new: what every run costs whatever it takes in.
        unchanged = run_build(landing, warehouse, logs, "unchanged_build", "build with nothing new", args.max_rss_mb)
        console.print(f"  build with nothing new {unchanged.report['seconds']:.2f} s")

        query_ms, query_first_ms, gene = time_queries(warehouse)

        # Deliveries pile up: the incremental build is round 0, each round after it adds one more
        # delivery per lab family to the same warehouse.
        rounds = [(incremental, _delivery_count(warehouse))]
        for round_ in range(1, args.pileup + 1):
            write_redeliveries(landing, round_)
            measured = run_build(landing, warehouse, logs, f"pileup_build_{round_:02d}", f"pile-up build {round_}",
                                 args.max_rss_mb)
            rounds.append((measured, _delivery_count(warehouse)))
            console.print(f"  pile-up build {round_}: {measured.report['seconds']:.2f} s, "
                          f"peak RSS {measured.maxrss_mb:,.0f} MB, {rounds[-1][1]} deliveries")

        # One new delivery at a time, each in its own run, as the landing-zone sensor runs a file
        # that arrives alone: the file's family and every table (the other raw assets not run).
        single, held = {}, {}
        for family in LAB_FAMILIES:
            write_redeliveries(landing, SINGLE_ROUND, (family,))
            single[family] = run_build(landing, warehouse, logs, f"single_delivery_{family}",
                                       f"run for one {family} delivery", args.max_rss_mb, family)
            held[family] = _delivery_count(warehouse)
            console.print(f"  run for one {family} delivery {single[family].report['seconds']:.2f} s, "
                          f"{single[family].report['steps_materialised']} steps")

        pileup = [{"round": round_, "deliveries": count, "seconds": round(measured.report["seconds"], 3),
                   "peak_rss_mb": round(measured.maxrss_mb, 1)} for round_, (measured, count) in enumerate(rounds)]
        rss_slope, rss_growth = growth([r["peak_rss_mb"] for r in pileup])
        seconds_slope, seconds_growth = growth([r["seconds"] for r in pileup])

        floor_s, full_s, incremental_s = floor.report["seconds"], full.report["seconds"], incremental.report["seconds"]
        results = {
            "scale": args.scale,
            "genes": args.genes,
            "seed": args.seed,
            "date": stamp.isoformat(timespec="seconds"),
            "generation_s": round(generation_s, 3),
            "floor_s": round(floor_s, 3),
            "full_build_s": round(full_s, 3),
            "incremental_s": round(incremental_s, 3),
            "peak_rss_mb": round(full.maxrss_mb, 1),
            "incremental_peak_rss_mb": round(incremental.maxrss_mb, 1),
            "unchanged_peak_rss_mb": round(unchanged.maxrss_mb, 1),
            "floor_peak_rss_mb": round(floor.maxrss_mb, 1),
            "query_ms": query_ms,
            "query_first_run_ms": query_first_ms,
            "query_gene": gene,
            "ratio_full_to_floor": round(full_s / floor_s, 3),
            "incremental_to_full": round(incremental_s / full_s, 4),
            "single_delivery_s": {family: round(measured.report["seconds"], 3) for family, measured in single.items()},
            "single_delivery_to_full": {family: round(measured.report["seconds"] / full_s, 4)
                                        for family, measured in single.items()},
            "single_delivery_steps": {family: measured.report["steps_materialised"] for family, measured in single.items()},
            "single_delivery_raw_steps": {family: sorted(step["step"] for step in measured.report["step_times"]
                                                         if step["step"].startswith("raw__"))
                                          for family, measured in single.items()},
            "single_delivery_deliveries_held": held,
            "unchanged_build_s": round(unchanged.report["seconds"], 3),
            "unchanged_to_full": round(unchanged.report["seconds"] / full_s, 4),
            "publish_s": {label: _step_seconds(measured, "publish__warehouse")
                          for label, measured in (("full", full), ("incremental", incremental), ("unchanged", unchanged))},
            # Whole child process, including interpreter start-up and imports (dagster, GX).
            "floor_process_s": round(floor.process_s, 3),
            "full_build_process_s": round(full.process_s, 3),
            "incremental_process_s": round(incremental.process_s, 3),
            "unchanged_process_s": round(unchanged.process_s, 3),
            "landing": {
                "mb": folder_mb(landing),
                "files": floor.report["files"],
                "rows": floor.report["rows"],
                "rows_total": sum(floor.report["rows"].values()),
            },
            "warehouse_mb": {"full": warehouse_full_mb, "incremental": round(warehouse.stat().st_size / 1e6, 2)},
            "incremental_deliveries": redeliveries,
            "failed_checks": {"full": full.report["failed_checks"], "incremental": incremental.report["failed_checks"]},
            "full_build_steps": step_profile(full),
            "incremental_steps": step_profile(incremental),
            "pileup": pileup,
            "pileup_rss_slope_mb": round(rss_slope, 1),
            "pileup_rss_growth_pct": round(rss_growth, 1),
            "pileup_seconds_slope": round(seconds_slope, 3),
            "pileup_seconds_growth_pct": round(seconds_growth, 1),
            "unchanged_steps": step_profile(unchanged),
            "machine": machine_info(),
        }
        results["targets"] = evaluate_targets(results)
        results["all_targets_pass"] = all(t["pass"] for t in results["targets"].values())
        results_path = args.results.resolve()
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print_report(results)
        console.print(f"Results written to {results_path}")
        failed = False
    except RuntimeError as error:
        console.print(f"[red]{error}[/red]")
        return 1
    finally:
        if failed:
            console.print(f"[red]bench failed[/red]; data and logs kept in {run_dir}")
        elif not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            console.print(f"Data kept in {run_dir}")
    return 1 if args.strict and not results["all_targets_pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
