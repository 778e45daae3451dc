"""One raw asset per delivery family: take in new files, check contract and expectations."""


from dataclasses import replace
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from pipelines.assets.metadata import markdown_table
from pipelines.blinding import BlindingMode, make_dummy_randomisation, validate_randomisation_list
from pipelines.ingest.delivery import (
    DeliveryNotTakenIn, DeliveryOutcome, Rejudged, discover_files, files_to_take_in, ingest_file,
    judge_again, judgment_committed, name_is_text, printable_name, unrecognised_files,
)
from pipelines.ingest.expectations import (
    PendingPages, SettledPages, load_suites, pending_pages, render_pending_pages, settle_pending_pages,
    write_data_docs_index,
)
from pipelines.resources import Blinding, LandingZone, Warehouse
from pipelines.study import FamilyContract, load_contracts
from pipelines.warehouse import apply_comments, atomic, query_sql, run_ddl

RANDOMISATION = "randomisation"

CONTRACT_CHECK = "delivery_contract"
EXPECTATIONS_CHECK = "great_expectations_suite"
RULES_CHECK = "judged_by_current_rules"


def _warning_check(check_name: str, passed: bool, **metadata) -> dg.AssetCheckResult:
    """A check that warns: what it finds is recorded and quarantined, never loaded unseen."""
    return dg.AssetCheckResult(check_name=check_name, passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)


def _contract_check(outcomes: list[DeliveryOutcome], not_taken_in: list[str]) -> dg.AssetCheckResult:
    refused = [o for o in outcomes if o.status != "accepted"]
    return _warning_check(
        CONTRACT_CHECK,
        not refused and not not_taken_in,
        new_files=len(outcomes),
        refused_files=len(refused),
        refused=dg.MetadataValue.md("\n".join(f"- **{o.status}** {o.reason}" for o in refused) or "none"),
        files_not_taken_in=dg.MetadataValue.md("\n".join(f"- {reason}" for reason in not_taken_in) or "none"),
    )


def _expectations_check(outcomes: list[DeliveryOutcome]) -> dg.AssetCheckResult:
    validated = [o for o in outcomes if o.validation is not None]
    failing: dict[str, int] = {}
    examples: dict[str, list] = {}
    for outcome in validated:
        for result in outcome.validation.outcomes:
            if not result.success:
                failing[result.rule] = failing.get(result.rule, 0) + result.unexpected_count
                examples.setdefault(result.rule, []).extend(result.examples)
    rows = [(rule, count, examples[rule][:3]) for rule, count in sorted(failing.items())]
    table = markdown_table(["expectation", "failing rows", "examples"], rows) if rows else dg.MetadataValue.md("all passed")
    return _warning_check(
        EXPECTATIONS_CHECK,
        not failing,
        deliveries_validated=len(validated),
        rows_failing=sum(o.rows_failing_expectations for o in validated),
        failures=table,
    )


def _rules_check(judged: list[Rejudged], waiting: list[Rejudged]) -> dg.AssetCheckResult:
    rows = [(j.file_name, j.delivery_id, "file" if j.from_file else "warehouse copy", j.rows_failing_before,
             j.rows_failing) for j in judged]
    columns = ["file", "delivery", "judged from", "rows held back before", "rows held back now"]
    kept = [j for j in judged + waiting if j.withheld_kept]
    return _warning_check(
        RULES_CHECK,
        not kept,
        deliveries_judged_again=len(judged),
        judged_again=markdown_table(columns, rows) if rows else dg.MetadataValue.md("none"),
        withheld_values_not_judged_again=dg.MetadataValue.md("\n".join(
            f"- {j.file_name} (delivery {j.delivery_id}): not in the landing zone as taken in; its withheld values keep "
            "the verdicts of earlier rules until the file is put back" for j in kept) or "none"),
    )


def _files_to_take_in(
    con: duckdb.DuckDBPyConnection, contract: FamilyContract, landing: LandingZone, warehouse: Warehouse,
    mode: BlindingMode,
) -> list[tuple[Path, Path]]:
    """(root, file) pairs to ingest. The randomisation never comes from the landing zone: a
    blinded build makes a dummy list, an unblinded build takes the list it was given, checked."""
    if contract.family != RANDOMISATION:
        return [(landing.root, path) for path in files_to_take_in(con, landing.root, discover_files(landing.root, contract))]
    subjects = con.execute(query_sql("current_subjects")).fetchall()
    if mode.blinded:
        kept = {u: (stratum, block, arm) for u, stratum, block, arm in con.execute(query_sql("current_dummy_randomisation")).fetchall()}
        dummy = make_dummy_randomisation([(u, stratum, day) for u, randomised, stratum, day in subjects if randomised], kept)
        path = warehouse.work_file.parent / "dummy" / "dummy_randomisation.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(dummy, path)
        return [(warehouse.work_file.parent, path)]
    path = Path(mode.randomisation_file).resolve()
    listed = pq.read_table(path, columns=["usubjid", "armcd", "stratum"]).to_pylist()
    validate_randomisation_list(
        [(str(r["usubjid"]).strip().upper(), r["armcd"], r["stratum"]) for r in listed],
        [(u, randomised, stratum) for u, randomised, stratum, _ in subjects],
    )
    return [(path.parent, path)]


def build_raw_asset(contract: FamilyContract) -> dg.AssetsDefinition:
    """The raw asset of one delivery family."""

    @dg.asset(
        key=["raw", contract.family],
        group_name="raw",
        kinds={"parquet", "duckdb"},
        deps=[["ref", "study_definition"]] + ([["raw", "subjects"]] if contract.family == RANDOMISATION else []),
        description=(
            f"{contract.description}\n\nNew files in `{contract.folder}/` are checked against their contract "
            f"(schemas/deliveries.yaml) and the `{contract.suite}` Great Expectations suite, then loaded as "
            "delivered with provenance. Files already taken in (same name and bytes) are skipped."
        ),
        check_specs=[
            dg.AssetCheckSpec(CONTRACT_CHECK, asset=["raw", contract.family],
                              description="Every new file is readable, complete and free of personal data."),
            dg.AssetCheckSpec(EXPECTATIONS_CHECK, asset=["raw", contract.family],
                              description=f"Great Expectations suite expectations/{contract.suite}.json on every new delivery."),
            dg.AssetCheckSpec(RULES_CHECK, asset=["raw", contract.family],
                              description="Every delivery is judged by the current rules: one judged by a suite or study "
                                          "value since changed is judged again, from its file or the warehouse's copy."),
        ],
    )
    def _raw(
        context: dg.AssetExecutionContext, landing: LandingZone, warehouse: Warehouse, blinding: Blinding
    ) -> dg.MaterializeResult:
        outcomes: list[DeliveryOutcome] = []
        not_taken_in: list[str] = []
        mode = blinding.mode
        digest_key = warehouse.digest_key()
        with warehouse.connect() as con:
            settled = _settle_pending_pages(context, warehouse.data_docs, con)
            for root, path in _files_to_take_in(con, contract, landing, warehouse, mode):
                warehouse.stop_if_asked(f"{path.relative_to(root).as_posix()} not taken in")
                try:
                    outcome = ingest_file(con, root, path, contract, mode, warehouse.data_docs, digest_key=digest_key)
                except DeliveryNotTakenIn as error:
                    # nothing of the file was recorded: the next build takes it in; the others go on
                    not_taken_in.append(str(error))
                    context.log.warning(f"not taken in: {error}")
                    continue
                if outcome is None:
                    continue
                if outcome.pending_pages is not None:
                    outcome = replace(outcome, data_docs=_render_pages(
                        context, warehouse.data_docs, outcome.pending_pages, outcome.file_name))
                outcomes.append(outcome)
                if outcome.status == "accepted":
                    context.log.info(
                        f"{outcome.file_name}: {outcome.rows_delivered} rows loaded as delivery "
                        f"{outcome.delivery_id}; {outcome.rows_failing_expectations} fail an expectation"
                    )
                else:
                    context.log.warning(f"{outcome.status}: {outcome.reason}")
            # a rule changed since earlier deliveries were judged: they are judged again (the
            # randomisation is checked against the subjects at every build instead)
            judged, waiting = ([], []) if contract.family == RANDOMISATION else judge_again(
                con, landing.root, contract, mode, digest_key, warehouse.data_docs)
            for rejudged in judged:
                context.log.warning(
                    f"{rejudged.file_name}: judged again by changed rules, from its "
                    f"{'file' if rejudged.from_file else 'rows in the warehouse'}; {rejudged.rows_failing} rows held "
                    f"back (before: {rejudged.rows_failing_before})")
            total = con.execute(f"select count(*) from raw.{contract.family}").fetchone()[0]
        # accepted with remarks (columns outside the contract, renamed headers, an export taken
        # in again): a lab sending an arm column is to be told, not only recorded
        remarks = [(o.file_name, o.warnings) for o in outcomes if o.status == "accepted" and o.warnings]
        pages = {rejudged.file_name: _render_pages(context, warehouse.data_docs, rejudged.pending_pages,
                                                   f"{rejudged.file_name}, judged again")
                 for rejudged in judged if rejudged.pending_pages is not None}
        if any(o.data_docs for o in outcomes) or any(pages.values()) or settled.suites:
            write_data_docs_index(warehouse.data_docs, {contract.suite} | settled.suites)
        for file_name, warnings in remarks:
            context.log.warning(f"{file_name}: accepted with remarks: {warnings}")
        return dg.MaterializeResult(
            metadata={
                "new_deliveries": len(outcomes),
                "rows_taken_in": sum(o.rows_delivered or 0 for o in outcomes if o.status == "accepted"),
                "rows_failing_expectations": sum(o.rows_failing_expectations for o in outcomes),
                "files_refused": sum(o.status != "accepted" for o in outcomes),
                "files_not_taken_in": len(not_taken_in),
                "accepted_with_remarks": dg.MetadataValue.md(
                    "\n".join(f"- {name}: {warnings}" for name, warnings in remarks) or "none"),
                "raw_rows_total": total,
                "data_docs": dg.MetadataValue.url(warehouse.data_docs_link(warehouse.data_docs / "index.html")),
                "validation_pages": dg.MetadataValue.md("\n".join(
                    [f"- [{o.file_name}]({warehouse.data_docs_link(page)})" for o in outcomes for page in o.data_docs]
                    + [f"- [{name}, judged again]({warehouse.data_docs_link(page)})"
                       for name, written in pages.items() for page in written]
                    + [f"- [{page.name}, left unrendered by a build that stopped]({warehouse.data_docs_link(page)})"
                       for page in settled.rendered]
                ) or "none"),
                # pages (of any family) whose results are stored but not rendered yet: the next build renders them
                "data_docs_pages_pending": len(pending_pages(warehouse.data_docs)),
                "deliveries_judged_again": len(judged),
            },
            check_results=[_contract_check(outcomes, not_taken_in), _expectations_check(outcomes), _rules_check(judged, waiting)],
        )

    return _raw


def _render_pages(context: dg.AssetExecutionContext, docs_dir: Path, pending: PendingPages, what: str) -> list[Path]:
    """The Data Docs pages of a committed judgment. The pages are a report on data already
    stored: one that cannot be rendered (a full disk) is told and stays pending, and the next
    build renders it; the step goes on."""
    try:
        return render_pending_pages(docs_dir, pending)
    except Exception as error:
        context.log.warning(f"{what}: its Data Docs page was not rendered ({type(error).__name__}: {error}); "
                            "its results are stored, and the next build renders it")
        return []


def _settle_pending_pages(
    context: dg.AssetExecutionContext, docs_dir: Path, con: duckdb.DuckDBPyConnection
) -> SettledPages:
    """The Data Docs pages builds before this one left pending, of every family: settled by the
    run's first raw step, before the site's index lists their results
    (:func:`settle_pending_pages`)."""
    try:
        settled = settle_pending_pages(docs_dir, lambda delivery_id, at: judgment_committed(con, delivery_id, at))
    except Exception as error:  # the notes folder cannot be listed: the report waits, the data does not
        context.log.warning(f"Data Docs pages left pending by earlier builds were not looked at "
                            f"({type(error).__name__}: {error}); the next build tries again")
        return SettledPages()
    if settled.rendered:
        context.log.warning(f"{len(settled.rendered)} Data Docs page(s) an earlier build stored but did not render "
                            "(it stopped, or could not write them) are rendered now")
    if settled.discarded:
        context.log.info(f"{settled.discarded} validation result(s) of a take-in that was not committed removed "
                         "from the Data Docs site")
    for lost in settled.lost:
        context.log.warning(f"a pending Data Docs page cannot be rendered, its note or stored result was cut short: {lost}")
    for waiting in settled.waiting:
        context.log.warning(f"a pending Data Docs page was not rendered now; the next build tries again: {waiting}")
    return settled


raw_assets = [build_raw_asset(contract) for contract in load_contracts().families.values()]

FAMILY_FOLDER_CHECK = "every_file_in_a_family_folder"


@dg.asset(
    key=["quarantine", "unrecognised_files"],
    group_name="quarantine",
    kinds={"duckdb"},
    deps=[["ref", "study_definition"]],
    check_specs=[dg.AssetCheckSpec(
        FAMILY_FOLDER_CHECK, asset=["quarantine", "unrecognised_files"],
        description="Every file in the landing zone is in a delivery family's folder (schemas/deliveries.yaml), "
                    "under a name in UTF-8.",
    )],
)
def unrecognised_landing_files(landing: LandingZone, warehouse: Warehouse) -> dg.MaterializeResult:
    """Files in the landing zone outside every family's folder (a new folder, a folder name in
    another case, the zone's root), or named in another encoding than UTF-8: no build takes them
    in, so each build lists them here."""
    contracts = list(load_contracts().families.values())
    folders = ", ".join(c.folder.strip("/") for c in contracts)
    rows = []
    for path in unrecognised_files(landing.root, contracts):
        try:
            stat = path.stat()
        except OSError:
            continue  # gone since it was listed (a partial upload renamed)
        reason = (f"not in a delivery family's folder ({folders}); not taken in: move it to its family's folder."
                  if name_is_text(path) else
                  "its name is not UTF-8 text (a name written in Latin-1 or cp1252?); not taken in: rename it.")
        rows.append([printable_name(path.relative_to(landing.root).as_posix()), stat.st_size,
                     datetime.fromtimestamp(stat.st_mtime), reason])
    with warehouse.connect() as con, atomic(con):
        run_ddl(con, "unrecognised_files")
        if rows:
            con.executemany("insert into quarantine.unrecognised_files values (?, ?, ?, ?)", rows)
        apply_comments(con, "quarantine", "unrecognised_files")
    metadata = {"files": len(rows), "unrecognised": dg.MetadataValue.md("\n".join(f"- {name}" for name, *_ in rows) or "none")}
    return dg.MaterializeResult(
        metadata=metadata, check_results=[_warning_check(FAMILY_FOLDER_CHECK, not rows, **metadata)],
    )
# Every suite is read into Great Expectations as the code location loads (see load_suites).
load_suites([contract.suite for contract in load_contracts().families.values()])
