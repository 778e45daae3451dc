"""Verdicts for one file before it is delivered, without loading anything.

The file goes through the same code as a build: contract check, Great Expectations suite and
the family's staging model, in a throw-away in-memory database. When a published warehouse is
there, its deliveries, subjects and samples are copied in so that the duplicate check and the
reference checks (unknown sample, visit window, never randomised...) give the verdict the real
build would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines.assets.models import STAGING_MODEL, run, upstream_models
from pipelines.blinding import BlindingMode
from pipelines.ingest.delivery import ingest_file
from pipelines.study import FamilyContract, load_contracts
from pipelines.warehouse import (
    create_raw_tables,
    has_table,
    load_reference_tables,
    read_digest_key,
    run_ddl,
    run_model,
)

# Reference tables copied from the published warehouse, by family being checked.
REFERENCE_COPIES = {
    "sample_manifest": ("core.subject",),
    "treg": ("staging.stg_biobank__sample",),
    "neurofilament": ("staging.stg_biobank__sample",),
    "transcript_gene": ("staging.stg_biobank__sample",),
    "transcript_summary": ("staging.stg_biobank__sample",),
}


class UnknownFamily(ValueError):
    """The file's family could not be told from its folder or its columns."""


@dataclass(frozen=True)
class RowVerdict:
    row_number: int
    rule: str
    reason: str


@dataclass
class FileVerdict:
    file: str
    family: str
    status: str  # accepted | rejected | duplicate | not taken in
    rows: int | None
    reason: str | None = None
    rows_held: list[RowVerdict] = field(default_factory=list)
    reference_checks: bool = False
    warnings: str | None = None  # remarks the file is accepted with (columns outside the contract...)

    @property
    def ok(self) -> bool:
        return self.status == "accepted"


def infer_family(path: Path) -> str:
    """The family whose folder the file sits in, else the one whose required columns it has,
    else the one whose folder's name starts the file's name (treg_batch09.parquet)."""
    contracts = load_contracts()
    posix = path.resolve().as_posix()
    for contract in contracts.families.values():
        if f"/{contract.folder}/" in posix:
            return contract.family
    unreadable = ""
    try:
        names = {n.strip().lower() for n in pq.read_schema(path).names}
    except Exception as error:  # whatever stops the reading: the file is judged by its name
        names, unreadable = set(), f" It cannot be read as Parquet ({error})."
    matches = [c.family for c in contracts.families_with_columns(names)]
    if len(matches) == 1:
        return matches[0]
    stem = path.name.lower()
    named = [c.family for c in contracts.families.values()
             if stem.startswith(c.folder.rsplit("/", 1)[-1].lower() + "_")]
    if len(named) == 1:
        return named[0]
    raise UnknownFamily(
        f"{path}: cannot tell which delivery family this file belongs to from its folder, columns or name;"
        f"{unreadable} Give --family ({', '.join(contracts.families)})."
    )


def not_taken_in(name: Path, contract: FamilyContract) -> str | None:
    """Why no build takes in the landing-zone file ``name`` as a ``contract`` delivery, if none does."""
    if any(part.startswith(("_", ".")) for part in name.parts):
        return (f"{name.as_posix()}: a build ignores paths with a part starting with '_' or '.' "
                "(work folders, partial uploads), so it would not be taken in.")
    folder = Path(contract.folder.strip("/"))
    if not name.is_relative_to(folder):
        return (f"{name.as_posix()} is not in the {contract.family} folder {folder.as_posix()}/: a build does not "
                f"take it in (it is listed in quarantine.unrecognised_files if it is in no family's folder). "
                f"Move it to {folder.as_posix()}/.")
    return None


def check_file(
    path: Path, family: str | None = None, warehouse: Path | None = None, landing: Path | None = None
) -> FileVerdict:
    """Check ``path`` as a delivery of ``family`` (inferred when not given). A file inside the
    ``landing`` zone is named and judged as a build names and judges it (its earlier versions,
    moves); one elsewhere by its bytes only."""
    family = family or infer_family(path)
    contract = load_contracts()[family]
    con = duckdb.connect()
    try:
        run_ddl(con, "audit")
        run_ddl(con, "macros")
        create_raw_tables(con)
        load_reference_tables(con)
        copies = REFERENCE_COPIES.get(family, ())
        published = warehouse is not None and warehouse.exists()
        reference = bool(copies) and published
        if published:
            con.execute("attach '{}' as published (read_only)".format(str(warehouse).replace("'", "''")))
            # the deliveries already loaded: the same bytes again are a duplicate, as in a build
            con.execute("insert into audit.delivery select * from published.audit.delivery")
            if has_table(con, "audit", "landing_file", database="published"):
                con.execute("insert into audit.landing_file select * from published.audit.landing_file")
            for table in copies:
                schema = table.split(".")[0]
                con.execute(f"create schema if not exists {schema}")
                con.execute(f"create table {table} as select * from published.{table}")
            con.execute("detach published")
        # Verdicts as a blinded build gives them: treatment-revealing values are never shown.
        blinding = BlindingMode(randomisation_file=str(path) if family == "randomisation" else None)
        inside = landing is not None and path.resolve().is_relative_to(landing.resolve())
        root = landing.resolve() if inside else path.parent
        if inside and (skipped := not_taken_in(path.resolve().relative_to(root), contract)):
            return FileVerdict(file=str(path), family=family, status="not taken in", rows=None, reason=skipped)
        # the warehouse's digests are keyed when blinded: without the key (a user who may not
        # read it) a copy of a delivery already loaded is not recognised as one
        key = read_digest_key(warehouse) if published else None
        outcome = ingest_file(con, root, path.resolve() if inside else path, contract, blinding,
                              checking_outside_the_zone=not inside, digest_key=key)
        if outcome is None:
            name = path.resolve().relative_to(root).as_posix()
            taken, status, reason, rows = con.execute(
                "select delivery_id, status, reason, rows_delivered from audit.delivery where file_name = ? "
                "order by delivery_id desc limit 1", [name]).fetchone()
            verdict = {"accepted": "which loaded", "rejected": f"which was refused: {reason}",
                       "duplicate": f"which was a duplicate: {reason}"}.get(status, status)
            return FileVerdict(
                # the rows counted when it was taken in: a refused file may not be readable
                file=str(path), family=family, status="duplicate", rows=rows,
                reason=f"{name} was taken in already as delivery {taken}, {verdict}. A build skips it: nothing new "
                       "would load.",
            )
        verdict = FileVerdict(
            file=str(path), family=family, status=outcome.status, rows=outcome.rows_delivered,
            reason=outcome.reason, reference_checks=reference, warnings=outcome.warnings,
        )
        if outcome.status != "accepted":
            return verdict
        if not reference and copies:
            # Without a warehouse only the file's own rules apply: contract and expectations.
            run_model(con, "staging", "stg_row_failures", view=True)
            held = con.execute(
                "select row_number, gx_rules, gx_reasons from staging.stg_row_failures order by row_number"
            ).fetchall()
        else:
            staging = STAGING_MODEL[family]
            for model in upstream_models(staging, provided=copies):
                run(con, model)
            held = con.execute(
                f"select row_number, qc_rule, qc_reason from {staging} where qc_rule is not null "
                "order by row_number"
            ).fetchall()
        verdict.rows_held = [RowVerdict(int(n), rule, reason) for n, rule, reason in held]
        return verdict
    finally:
        con.close()
