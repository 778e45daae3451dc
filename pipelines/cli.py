"""The ``mirocals`` command line."""

from __future__ import annotations

import csv
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.settings import get_settings

app = typer.Typer(help="MIROCALS biomarker warehouse.", no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)

LandingOption = Annotated[Optional[Path], typer.Option("--landing", help="Landing zone folder (default: $MIROCALS_LANDING or ./landing).")]
WarehouseOption = Annotated[Optional[Path], typer.Option("--warehouse", help="Warehouse file (default: $MIROCALS_WAREHOUSE or warehouse/build/mirocals.duckdb).")]
VerboseOption = Annotated[bool, typer.Option("--verbose", help="Show Dagster's log of the run (warnings, failed steps with their traceback).")]


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the landing zone into.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 20170615,
    scale: Annotated[float, typer.Option(help="Multiplies the number of subjects; 1 is the real trial's size.")] = 1.0,
    genes: Annotated[int, typer.Option(help="Genes per RNA-seq sample.")] = 20000,
) -> None:
    """Write a synthetic MIROCALS landing zone (reference files, restricted list, lab batches)."""
    from pipelines.synth import generate_landing_zone

    with console.status(f"Generating a MIROCALS landing zone at scale {scale} with {genes} genes..."):
        report = generate_landing_zone(out, seed=seed, scale=scale, genes=genes)
    table = Table(title=escape(f"Landing zone {out}"))
    for column in ("family", "file", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for f in report.files:
        table.add_row(f.family, escape(f.path), f"{f.rows:,}")
    console.print(table)
    console.print(
        f"{report.n_entered} subjects entered the run-in, {report.n_randomised} randomised "
        f"({', '.join(f'{k} {v}' for k, v in report.n_per_arm.items())}); "
        f"{len(report.faults)} faults injected (see {out}/_generator/report.json)."
    )


@app.command()
def build(landing: LandingOption = None, warehouse: WarehouseOption = None, verbose: VerboseOption = False) -> None:
    """Take in new deliveries and build the blinded warehouse (the same asset graph as the UI)."""
    settings = get_settings(landing, warehouse)
    _run_build(settings.landing, settings.warehouse, verbose=verbose)


@app.command()
def unblind(
    randomisation: Annotated[Path, typer.Option("--randomisation", help="The real randomisation list (Parquet).", exists=True, dir_okay=False)],
    landing: LandingOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Unblinded warehouse file (default: $MIROCALS_UNBLINDED_WAREHOUSE or warehouse/build/unblinded/).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Build the UNBLINDED warehouse from the real randomisation list, into its own owner-only file.

    The list is checked first (every randomised subject exactly once, declared arms, strata as in
    the subjects file); the unblinding is recorded in audit.unblinding.
    """
    settings = get_settings(landing, unblinded_warehouse=out)
    if settings.unblinded_warehouse == settings.warehouse:
        err.print("[red]The unblinded warehouse must not be the blinded warehouse file.[/red]")
        raise typer.Exit(2)
    _run_build(settings.landing, settings.unblinded_warehouse, randomisation.resolve(), verbose=verbose)
    console.print(f"[bold]UNBLINDED[/bold] warehouse (owner-only): {settings.unblinded_warehouse}")


def _dagster_instance():
    """The project's Dagster instance when DAGSTER_HOME is set (builds then show in the UI's
    history); otherwise a throw-away one."""
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    return dg.DagsterInstance.get() if home and Path(home).is_dir() else dg.DagsterInstance.ephemeral()


def _run_build(landing: Path, warehouse: Path, randomisation_file: Path | None = None, verbose: bool = False) -> None:
    from pipelines.build import build_warehouse, step_count, summarise
    from pipelines.locking import BuildLocked

    settings = get_settings(landing, warehouse)
    if not settings.landing.is_dir():
        err.print(f"[red]No landing zone at {settings.landing}[/red]: run `mirocals demo-data --out {settings.landing}` first.")
        raise typer.Exit(2)
    total = step_count(settings.landing, settings.warehouse)
    with Progress(
        TextColumn("[bold]building[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=console,
    ) as progress:
        task = progress.add_task("", total=total)
        try:
            result = build_warehouse(
                settings.landing, settings.warehouse,
                # an unblinded build's runs and metadata never enter the shared UI history
                instance=_dagster_instance() if randomisation_file is None else None,
                on_step=lambda key: progress.update(task, advance=1, description=key),
                randomisation_file=randomisation_file,
                # the failed steps' causes are printed below; Dagster's own log only with --verbose
                log_level="WARNING" if verbose else "CRITICAL",
            )
        except BuildLocked as locked:
            progress.stop()
            err.print(f"[red]{escape(str(locked))}[/red]")
            raise typer.Exit(3) from None
    if not result.success:
        _print_failed_checks(result)
        for error in result.errors:
            err.print(f"[red]{escape(str(error))}[/red]")
        published = ("the published warehouse was not changed" if settings.warehouse.exists()
                     else "no warehouse was published")
        err.print(f"[red]Build failed[/red] (run {result.run_id}); {published}. `--verbose` shows Dagster's log.")
        raise typer.Exit(1)
    # narrow enough for an 80-column terminal or CI log: no value is cut short
    table = Table(title=f"Warehouse {settings.warehouse}", box=box.SIMPLE_HEAD, padding=0, pad_edge=False)
    rows = summarise(settings.warehouse)
    table.add_column("family", no_wrap=True, min_width=max((len(r[0]) for r in rows), default=6))
    for column in ("files", "delivered", "loaded", "held back", "refused", "duplicates"):
        table.add_column(column, justify="right", overflow="fold")
    unbalanced = []
    for family, deliveries, delivered, loaded, quarantined, refused, duplicates, balanced in rows:
        table.add_row(family, str(deliveries), f"{delivered:,}", f"{loaded:,}", f"{quarantined:,}", str(refused),
                      str(duplicates))
        if not balanced:
            unbalanced.append(family)
    console.print(table)
    console.print("Rows delivered, loaded and held back (the rows in quarantine.rejected_rows); files refused and "
                  "duplicate files. Delivered also counts the rows of refused and duplicate files, which are not "
                  "loaded (audit.reconciliation has one row per file).")
    if unbalanced:
        console.print(f"[red]NOT BALANCED[/red] (rows delivered <> loaded + held back): {', '.join(unbalanced)}")
    else:
        console.print("Every delivery balances: its rows delivered are loaded or held back.")
    _print_failed_checks(result)


def _print_failed_checks(result) -> None:
    """Each failed check, and the files it names with the reason (refused, not taken in)."""
    for check in result.failed_checks:
        console.print(f"[yellow]check failed:[/yellow] {escape(check)}")
        for detail in result.check_details.get(check, []):
            console.print(f"  {escape(detail)}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run against the warehouse, read-only.")],
    warehouse: WarehouseOption = None,
    format: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Run read-only SQL on the warehouse."""
    from pipelines.warehouse import read_connection

    if format not in ("table", "csv", "json"):
        err.print(f"Unknown --format {format!r}: use table, csv or json.")
        raise typer.Exit(2)
    settings = _settings_of_a_built_warehouse(warehouse)
    with read_connection(settings.warehouse, sandboxed=True) as con:
        try:
            statements = con.extract_statements(query)
            if len(statements) != 1:
                raise ValueError(f"give one statement at a time ({len(statements)} given)")
            cursor = con.execute(query)
        except Exception as error:
            err.print(f"[red]Refused or failed:[/red] {escape(str(error))}")
            raise typer.Exit(1) from None
        if cursor.description is None:
            return
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif format == "json":
        typer.echo(json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=2))
    else:
        table = Table(show_lines=False)
        for column in columns:
            table.add_column(escape(column))
        for row in rows:
            table.add_row(*("" if v is None else escape(str(v)) for v in row))
        console.print(table)


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Parquet file to check before delivery.", exists=True, dir_okay=False)],
    family: Annotated[Optional[str], typer.Option(help="Delivery family (default: from the folder or the columns).")] = None,
    warehouse: WarehouseOption = None,
    landing: LandingOption = None,
    rows: Annotated[int, typer.Option(help="How many held-back rows to list.")] = 20,
) -> None:
    """Give the verdicts a build would give one file, without loading anything.

    Exits 1 when the file would be refused, was taken in already, sits where a build does not look
    (outside its family's folder in the landing zone), or not one of its rows would load
    (held-back rows are listed); 2 when its family cannot be told (give --family); else 0.
    """
    from pipelines.ingest.check import UnknownFamily, check_file

    settings = get_settings(landing, warehouse)
    try:
        verdict = check_file(file, family, settings.warehouse, settings.landing)
    except UnknownFamily as unknown:
        err.print(f"[red]{escape(str(unknown))}[/red]")
        raise typer.Exit(2) from None
    if not verdict.ok:
        label = "NOT TAKEN IN" if verdict.status == "not taken in" else "REFUSED"
        console.print(f"[red]{label}[/red] ({verdict.family}) {escape(verdict.reason)}")
        raise typer.Exit(1)
    held = verdict.rows_held
    console.print(
        f"[green]ACCEPTED[/green] ({verdict.family}) {escape(str(verdict.file))}: {verdict.rows} rows, "
        f"{verdict.rows - len(held)} would load, {len(held)} would be held back."
    )
    if verdict.warnings:
        console.print(f"[yellow]Accepted with remarks: {escape(verdict.warnings)}[/yellow]")
    if not verdict.reference_checks and verdict.family in ("sample_manifest", "treg", "neurofilament", "transcript_gene", "transcript_summary"):
        console.print(f"[yellow]No warehouse at {settings.warehouse}: checks against subjects and samples were skipped.[/yellow]")
    if held:
        table = Table()
        for column in ("row", "rule", "reason"):
            table.add_column(column)
        for row in held[:rows]:
            table.add_row(str(row.row_number), row.rule, escape(row.reason))
        console.print(table)
        if len(held) > rows:
            console.print(f"... and {len(held) - rows} more (--rows N to list them).")
    if verdict.rows == len(held):
        console.print("[red]Not one row would load.[/red]")
        raise typer.Exit(1)


def _settings_of_a_built_warehouse(warehouse: Path | None):
    """The settings, once the warehouse file they name exists; else a one-line message, exit 2."""
    from pipelines.warehouse import not_built

    settings = get_settings(warehouse=warehouse)
    if not settings.warehouse.exists():
        err.print(f"[red]{escape(not_built(settings.warehouse))}[/red]")
        raise typer.Exit(2)
    return settings


@app.command()
def export(
    table: Annotated[str, typer.Argument(help="Published table (adsl, adbm, adgene, core.treg, ...) or gene-matrix.")],
    format: Annotated[str, typer.Option("--format", help="parquet, csv or xpt (SAS transport v5, 8-character names).")] = "parquet",
    out: Annotated[Path, typer.Option("--out", help="File to write.")] = Path("export.parquet"),
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Keep these PARAMCDs (repeatable).")] = None,
    visit: Annotated[Optional[list[str]], typer.Option("--visit", help="Keep these visits (repeatable): AVISIT in analysis tables, visit_code in core tables.")] = None,
    gene: Annotated[Optional[list[str]], typer.Option("--gene", help="Keep these genes (repeatable), by Ensembl gene id or symbol: the gene tables.")] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Export a published table, or the genes x samples matrix (gene-matrix) for omics tools."""
    from pipelines.api import UnknownTable
    from pipelines.export import export_gene_matrix, export_table

    settings = _settings_of_a_built_warehouse(warehouse)
    try:
        if table == "gene-matrix":
            if param or visit or gene:
                raise ValueError("gene-matrix writes every gene and sample: it takes no --param, --visit or --gene")
            genes, samples, left_out = export_gene_matrix(settings.warehouse, out, format)
            console.print(f"Wrote {genes:,} genes x {samples:,} samples to {out} (sample annotation beside it)"
                          + (f"; {left_out:,} genes without a value left out (withheld in a blinded build, or held back)."
                             if left_out else "."))
            return
        rows = export_table(settings.warehouse, table, format, out, params=param, visits=visit, genes=gene)
    except (UnknownTable, ValueError) as error:
        err.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(2) from None
    console.print(f"Wrote {rows:,} rows of {table} to {out} ({format}).")


@app.command()
def dictionary(
    out: Annotated[Path, typer.Option("--out", help="Markdown file to write.")] = Path("docs/data_dictionary.md"),
) -> None:
    """Write the data dictionary (tables, columns, units, parameters, derivation rules) from schemas/."""
    from pipelines.dictionary import render_markdown

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(), encoding="utf-8")
    console.print(f"Wrote {out}")


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="Folder to write index.html into.")] = Path("report"),
    warehouse: WarehouseOption = None,
) -> None:
    """Write a static HTML report: deliveries and quality over time, biomarker plots by visit and arm."""
    from pipelines.report import write_report

    settings = _settings_of_a_built_warehouse(warehouse)
    index = write_report(settings.warehouse, out)
    console.print(f"Wrote {index}")


@app.command("next-steps")
def next_steps(warehouse: WarehouseOption = None) -> None:
    """Print where the warehouse is and what to do with it."""
    settings = get_settings(warehouse=warehouse)
    # the commands read the warehouse named here, not the default, when it is another one
    named = "" if settings.warehouse == get_settings().warehouse else f" --warehouse {shlex.quote(str(settings.warehouse))}"
    # each command on a line of its own, never wrapped, so that it can be copied as it is
    console.print(
        f"""
[bold green]The MIROCALS warehouse is built:[/bold green] {escape(str(settings.warehouse))}

Next: read-only SQL, the DuckDB shell (read-only), the Dagster UI and daemon on http://127.0.0.1:3000
(with the Great Expectations Data Docs on http://127.0.0.1:3001), the whole test suite:
  .venv/bin/mirocals sql "select armcd, count(*) from core.subject where randomised group by all"{escape(named)}
  .venv/bin/mirocals sql "select * from audit.reconciliation" --format csv{escape(named)}
  .venv/bin/duckdb -readonly {escape(shlex.quote(str(settings.warehouse)))}
  make ui
  make test
""",
        soft_wrap=True,
    )


if __name__ == "__main__":
    app()
