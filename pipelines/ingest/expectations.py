"""Run the Great Expectations 1.x suites in ``expectations/`` on one delivery.

Suites are GX-native JSON. Values that belong to the study definition (sites, visit codes,
units, plausible ranges) appear in the suites as ``{"$PARAMETER": name}`` and are filled in
from ``schemas/`` by :func:`suite_parameters`, so no such value is written twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.ingest.values import distinct_codes
from pipelines.study import EXPECTATIONS_DIR, load_study

if TYPE_CHECKING:  # blinding uses this module's results
    from pipelines.blinding import BlindingMode

# Number of example failing values kept per expectation in the validation summary.
EXAMPLES_PER_EXPECTATION = 5
# Large deliveries are validated in slices of this many rows to bound memory (GX works on
# pandas). Suites with expectations across rows (uniqueness) are always run whole.
ROWS_PER_SLICE = 2_000_000
CROSS_ROW_EXPECTATIONS = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}


@dataclass(frozen=True)
class RowFailure:
    row_number: int
    rule: str
    column: str | None
    reason: str


@dataclass(frozen=True)
class ExpectationOutcome:
    rule: str
    expectation_type: str
    column: str | None
    success: bool
    element_count: int
    unexpected_count: int
    description: str
    examples: list[Any]


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]
    row_failures: list[RowFailure]
    # The Great Expectations validation results themselves (one per slice), for Data Docs.
    gx_results: list[Any] = field(default_factory=list, repr=False)

    @property
    def rows_failing(self) -> int:
        """Delivered rows that fail at least one expectation."""
        return len({f.row_number for f in self.row_failures})


def suite_parameters(blinding: BlindingMode | None = None) -> dict[str, Any]:
    """Values the suites refer to with ``$PARAMETER``, taken from the study definition.

    A blinded build's randomisation carries the masked arm codes.
    """
    study = load_study()
    arms = blinding.arms() if blinding is not None else study.arms
    params: dict[str, Any] = {
        "siteids": [s.siteid for s in study.sites],
        "sexes": ["M", "F"],
        "onsets": list(study.strata["levels"]["onset"]),
        "age_lo": study.raw["study"]["age_range"][0],
        "age_hi": study.raw["study"]["age_range"][1],
        # identifiers: stray spaces and case are harmonised (staging trims spaces); tabs, line
        # breaks and anything non-ASCII are not, so they fail here with the value quoted
        "usubjid_regex": rf"(?i)^ *{study.studyid}-[A-Z]{{2}}[0-9]{{2}}-[0-9]{{4}} *$",
        "sample_id_regex": r"^ *[A-Za-z0-9_.-]+ *$",
        "visit_codes": [v.visit_code for v in study.visits],
        "matrices": list(study.raw["matrices"]),
        "armcds": [a["armcd"] for a in arms],
        "strata": [
            f"{c}-{o}" for c in study.strata["levels"]["country"] for o in study.strata["levels"]["onset"]
        ],
        "nf_analytes": sorted({p.source["analyte"] for p in study.parameters_of("neurofilament")}),
        "nf_unit_regex": "(?i)^ *(?:" + "|".join(
            re.escape(u) for u in sorted({u for p in study.parameters_of("neurofilament") for u in p.units})
        ) + ") *$",
        # read as DuckDB reads the qualifier (ref.result_qualifier, RE2): \s is an ASCII space there,
        # so '<' then a no-break space would pass here and load in staging as the number 3.0
        "result_regex": "(?i)^ *(?:[0-9]+(?:\\.[0-9]+)?|" + "|".join(
            pattern.replace("\\s", "[ \\t\\n\\f\\r]")
            for pattern in study.raw["censored_results"]["below"] + study.raw["censored_results"]["above"]
        ) + ") *$",
        "gene_id_regex": r"^ENSG[0-9]{11}$",
        "expression_lo": study.gene_expression["plausible"][0],
        "expression_hi": study.gene_expression["plausible"][1],
    }
    for p in study.parameters:
        params[f"{p.paramcd}_lo"], params[f"{p.paramcd}_hi"] = p.plausible
    return params


def rules_version(suite: str, parameters: dict[str, Any], withholding: dict | None = None) -> str:
    """The version of the rules a delivery is judged by: SHA-256 of the suite's expectations
    and of the study values they name with ``$PARAMETER`` (a plausible range changed in
    ``schemas/study.yaml`` is a new version), and in a blinded build of what it withholds
    (``BlindingMode.withholding``). Each judgment records it (``audit.validation``);
    a build judges a delivery judged by another version again (``judge_again`` in
    :mod:`pipelines.ingest.delivery`)."""
    expectations = load_suite_json(suite)["expectations"]
    named = sorted(set(_parameter_names(expectations)))
    document = {"expectations": expectations, "parameters": {name: parameters.get(name) for name in named}}
    if withholding is not None:
        document["withholding"] = withholding
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _parameter_names(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "$PARAMETER" in value:
            yield value["$PARAMETER"]
        else:
            for item in value.values():
                yield from _parameter_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _parameter_names(item)


def load_suite_json(suite: str) -> dict[str, Any]:
    """The suite as stored in ``expectations/<suite>.json``."""
    return json.loads((EXPECTATIONS_DIR / f"{suite}.json").read_text(encoding="utf-8"))


@cache
def _gx():
    """One ephemeral GX context per process, with progress bars off (they flood stderr)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("deliveries")
    return gx, context, source


def load_suites(suites: list[str]) -> None:
    """Start Great Expectations and read every suite into it, as the code location loads.

    A suite GX cannot read (an unknown expectation type, a wrong argument) then stops the
    definitions from loading, naming its file, before any delivery is touched; and a build pays
    no GX start-up (seconds) in its first validation.
    """
    for suite in suites:
        expectations = load_suite_json(suite)["expectations"]
        for position, item in enumerate(expectations, start=1):
            missing = [key for key in ("rule", "description") if not (item.get("meta") or {}).get(key)]
            if missing:
                raise ValueError(
                    f"expectations/{suite}.json, expectation {position} ({item.get('type')}): meta needs "
                    f"{' and '.join(missing)} (quarantine reasons are built from them)"
                )
        try:
            _validation_definition(suite)
            if _by_value(expectations):
                for column in dict.fromkeys(e["kwargs"]["column"] for e in expectations):
                    _validation_definition(suite, column)
        except Exception as error:
            raise ValueError(
                f"expectations/{suite}.json cannot be read by Great Expectations: {type(error).__name__}: {error}"
            ) from error


def _by_value(expectations: list[dict[str, Any]]) -> bool:
    """Whether every expectation judges a row by one column's value (see validate_table)."""
    return all("column" in e["kwargs"] and e["type"] not in CROSS_ROW_EXPECTATIONS for e in expectations)


@cache
def _validation_definition(suite: str, column: str | None = None):
    """The suite's validation definition; with ``column``, one holding only that column's
    expectations (used to validate a large delivery's distinct values, see validate_table)."""
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    gx, context, source = _gx()
    stored = load_suite_json(suite)
    name = stored["name"] if column is None else f"{stored['name']}.{column}"
    expectation_suite = ExpectationSuite(name=name)
    for item in stored["expectations"]:
        if column is None or item["kwargs"].get("column") == column:
            expectation_suite.add_expectation_configuration(
                ExpectationConfiguration(type=item["type"], kwargs=item["kwargs"], meta=item["meta"])
            )
    expectation_suite = context.suites.add(expectation_suite)
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    return context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=expectation_suite))


def _columns_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return None


def _printable(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()
    if value is None:
        return "missing"
    if isinstance(value, float) and math.isnan(value):
        return "missing or NaN"  # the frame GX reads holds an empty number as NaN too
    if isinstance(value, str) and (not value.strip() or value != value.strip()):
        return repr(value)  # blanks and spaces around a value are seen
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def validate_table(
    suite: str,
    table: pa.Table,
    columns: list[str],
    parameters: dict[str, Any] | None = None,
    by_value_above: int = ROWS_PER_SLICE,
) -> SuiteResult:
    """Validate ``columns`` of an Arrow table whose ``row_number`` column is the file row number.

    A delivery of up to ``by_value_above`` rows is validated as delivered, one GX run. A larger
    one whose expectations all judge a row by one column's value (the gene-level table: 20,000
    rows per sample, a few hundred distinct sample ids, ~20,000 gene ids) is validated value by
    value: each column's expectations run on that column's distinct values, every distinct value
    once, and each verdict applies to every row holding the value. Rows, counts and examples are
    the same as a row-by-row run; the Data Docs page shows the distinct values checked. Other
    large deliveries are validated in slices of ``ROWS_PER_SLICE`` rows to bound memory.
    """
    expectations = load_suite_json(suite)["expectations"]
    parameters = parameters or suite_parameters()
    if table.num_rows > by_value_above and _by_value(expectations):
        return _validate_distinct_values(suite, table, expectations, parameters)
    cross_row = any(e["type"] in CROSS_ROW_EXPECTATIONS for e in expectations)
    step = table.num_rows if cross_row else ROWS_PER_SLICE
    results = []
    for start in range(0, max(table.num_rows, 1), max(step, 1)):
        part = table.slice(start, step).select(["row_number", *columns]).to_pandas()
        results.append(run_suite(suite, part.set_index("row_number").rename_axis(None), expectations, parameters))
    return _merge(suite, results)


def _validate_distinct_values(
    suite: str, table: pa.Table, expectations: list[dict[str, Any]], parameters: dict[str, Any]
) -> SuiteResult:
    row_numbers = table["row_number"].to_numpy()
    outcomes: dict[int, ExpectationOutcome] = {}
    failures: list[RowFailure] = []
    gx_results = []
    for column in dict.fromkeys(e["kwargs"]["column"] for e in expectations):
        dictionary, codes = distinct_codes(table[column])
        # Each distinct value is shown to GX once, indexed by the first row that holds it
        # (assigning positions in reverse leaves each code's first position).
        first = np.empty(len(dictionary), dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        rows_per_code = np.bincount(codes, minlength=len(dictionary))
        frame = dictionary.to_pandas().to_frame(column)
        frame.index = row_numbers[first]
        code_of_first_row = dict(zip(row_numbers[first].tolist(), range(len(first)), strict=True))
        result = _validation_definition(suite, column).run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            result_format={"result_format": "COMPLETE"},
        )
        gx_results.append(result)
        for item in result.results:
            _raise_if_not_evaluated(suite, item)
            meta = item.expectation_config.meta
            description = _described(meta, _stored_kwargs(expectations, meta), parameters)
            detail = item.result or {}
            first_rows = [int(r) for r in detail.get("unexpected_index_list") or []]
            bad_codes = [code_of_first_row[r] for r in first_rows]
            values = detail.get("unexpected_list") or []
            reasons = {
                code: f"{description} (delivered: {_printable(value)})"
                for code, value in zip(bad_codes, _delivered_values(frame, column, first_rows), strict=True)
            }
            failing = np.nonzero(np.isin(codes, bad_codes))[0]
            failures.extend(
                RowFailure(row_number=int(row_numbers[i]), rule=meta["rule"], column=column, reason=reasons[codes[i]])
                for i in failing
            )
            position = next(i for i, e in enumerate(expectations) if e["meta"]["rule"] == meta["rule"])
            outcomes[position] = ExpectationOutcome(
                rule=meta["rule"],
                expectation_type=item.expectation_config.type,
                column=column,
                success=bool(item.success),
                element_count=table.num_rows,
                unexpected_count=int(rows_per_code[bad_codes].sum()) if bad_codes else 0,
                description=description,
                examples=_printable(list(values[:EXAMPLES_PER_EXPECTATION])),
            )
    failures.sort(key=lambda f: f.row_number)
    return SuiteResult(
        suite=suite,
        success=all(o.success for o in outcomes.values()),
        outcomes=[outcomes[i] for i in sorted(outcomes)],
        row_failures=failures,
        gx_results=gx_results,
    )


def _merge(suite: str, results: list[SuiteResult]) -> SuiteResult:
    if len(results) == 1:
        return results[0]
    merged: list[ExpectationOutcome] = []
    for position, first in enumerate(results[0].outcomes):
        same = [r.outcomes[position] for r in results]
        merged.append(
            ExpectationOutcome(
                rule=first.rule,
                expectation_type=first.expectation_type,
                column=first.column,
                success=all(o.success for o in same),
                element_count=sum(o.element_count for o in same),
                unexpected_count=sum(o.unexpected_count for o in same),
                description=first.description,
                examples=[e for o in same for e in o.examples][:EXAMPLES_PER_EXPECTATION],
            )
        )
    return SuiteResult(
        suite=suite,
        gx_results=[g for r in results for g in r.gx_results],
        success=all(r.success for r in results),
        outcomes=merged,
        row_failures=[f for r in results for f in r.row_failures],
    )


def _stored_kwargs(expectations: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The arguments of the suite file's expectation with this rule, parameters unresolved."""
    return next(e["kwargs"] for e in expectations if e["meta"]["rule"] == meta["rule"])


def _described(meta: dict[str, Any], kwargs: dict[str, Any], parameters: dict[str, Any]) -> str:
    """An expectation's description, with the bounds that the study definition gives it
    (``$PARAMETER``), which the description cannot state: 'cd4_count must lie in the plausible
    range (cells/uL): 50 to 5000'. A bound written in the suite is in its description already."""

    def bound(name: str) -> Any:
        value = kwargs.get(name)
        if not (isinstance(value, dict) and "$PARAMETER" in value):
            return None
        if value["$PARAMETER"] not in parameters:
            raise KeyError(f"expectation {meta['rule']}: no suite parameter {value['$PARAMETER']!r}")
        value = parameters[value["$PARAMETER"]]
        return int(value) if isinstance(value, float) and value.is_integer() else value

    low, high = bound("min_value"), bound("max_value")
    above = "above" if kwargs.get("strict_min") else "at least"
    below = "below" if kwargs.get("strict_max") else "at most"
    if low is not None and high is not None and not kwargs.get("strict_min") and not kwargs.get("strict_max"):
        return f"{meta['description']}: {low} to {high}"
    bounds = [text for text in (low is not None and f"{above} {low}", high is not None and f"{below} {high}") if text]
    return f"{meta['description']}: {' and '.join(bounds)}" if bounds else meta["description"]


def _raise_if_not_evaluated(suite: str, item: Any) -> None:
    """Stop on an expectation Great Expectations could not evaluate: its result would say no row
    fails it, and every row would load unjudged. GX 1.x reports the error on the result, or per
    metric the expectation needed (a regex the string engine cannot compile)."""
    info = item.exception_info or {}
    raised = [info] if info.get("raised_exception") else [
        metric for metric in info.values() if isinstance(metric, dict) and metric.get("raised_exception")]
    if raised:
        raise RuntimeError(
            f"Great Expectations could not evaluate {suite}.{(item.expectation_config.meta or {}).get('rule')}: "
            f"{raised[0].get('exception_message')}"
        )


def run_suite(
    suite: str, frame: pd.DataFrame, expectations: list[dict[str, Any]], parameters: dict[str, Any]
) -> SuiteResult:
    """Validate ``frame`` (index = 1-based row number in the delivered file) with a suite, whose
    ``expectations`` as stored give each failure's reason."""
    result = _validation_definition(suite).run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE"},
    )
    outcomes: list[ExpectationOutcome] = []
    failures: list[RowFailure] = []
    for item in result.results:
        _raise_if_not_evaluated(suite, item)
        config = item.expectation_config
        meta = config.meta or {}
        description = _described(meta, _stored_kwargs(expectations, meta), parameters)
        column = _columns_of(config.kwargs)
        detail = item.result or {}
        index_list = [int(r if not isinstance(r, dict) else next(iter(r.values())))
                      for r in detail.get("unexpected_index_list") or []]
        values = detail.get("unexpected_list") or []
        # GX lists at most 200 unexpected values: each failing row's value is read from the frame.
        delivered = _delivered_values(frame, column, index_list)
        for row_number, value in zip(index_list, delivered, strict=True):
            failures.append(
                RowFailure(
                    row_number=row_number,
                    rule=meta["rule"],
                    column=column,
                    reason=f"{description} (delivered: {_printable(value)})",
                )
            )
        outcomes.append(
            ExpectationOutcome(
                rule=meta["rule"],
                expectation_type=config.type,
                column=column,
                success=bool(item.success),
                element_count=int(detail.get("element_count") or len(frame)),
                unexpected_count=int(detail.get("unexpected_count") or 0),
                description=description,
                examples=_printable(list(values[:EXAMPLES_PER_EXPECTATION])),
            )
        )
    return SuiteResult(
        suite=suite, success=bool(result.success), outcomes=outcomes, row_failures=failures, gx_results=[result]
    )


def _delivered_values(frame: pd.DataFrame, column: str | None, rows: list[int]) -> list[Any]:
    """The values of ``column`` (``a,b``: pairs of values) in the given rows of ``frame``."""
    if not rows or column is None:
        return [None] * len(rows)
    columns = column.split(",")
    picked = frame.loc[rows, columns]
    if len(columns) == 1:
        values = picked[columns[0]]
        if pd.api.types.is_float_dtype(values):
            return values.tolist()
        # outside a float column, NaN is how the frame holds an empty value
        return [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]
    return [list(pair) for pair in picked.itertuples(index=False)]


# Keys of a GX expectation result that carry delivered values.
VALUE_KEYS = ("partial_unexpected_list", "unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
              "unexpected_index_list", "unexpected_index_query", "observed_value")


def redact_values(result: SuiteResult, withhold: Callable[[str | None], bool], placeholder: str) -> SuiteResult:
    """The result with every delivered value of a withheld column replaced by ``placeholder``:
    in failure reasons, in examples and in the GX results that Data Docs render."""
    for gx_result in result.gx_results:
        _redact_gx_result(gx_result, withhold, placeholder)
    failures = [
        replace(f, reason=f"{f.reason.split(' (delivered:')[0]} (delivered: {placeholder})") if withhold(f.column) else f
        for f in result.row_failures
    ]
    outcomes = [replace(o, examples=[placeholder] * len(o.examples)) if withhold(o.column) else o for o in result.outcomes]
    return replace(result, row_failures=failures, outcomes=outcomes)


def _redact_gx_result(gx_result: Any, withhold: Callable[[str | None], bool], placeholder: str) -> bool:
    """Replace, in place, the delivered values of withheld columns in a Great Expectations
    result; returns whether it held any."""
    # GX's MD5 of the validated frame: with the other columns stored, a small delivery's
    # withheld values could be found again by trying values until the hash matches
    changed = gx_result.meta.get("batch_markers", {}).pop("pandas_data_fingerprint", None) is not None
    for item in gx_result.results:
        if withhold(_columns_of(item.expectation_config.kwargs)) and item.result:
            for key in VALUE_KEYS:
                redacted = [placeholder] if isinstance(item.result.get(key), list) else placeholder
                if key in item.result and item.result[key] != redacted:
                    item.result[key] = redacted
                    changed = True
    return changed


def redact_data_docs(
    docs_dir: Path, suite: str, labels: list[str], withhold: Callable[[str | None], bool], placeholder: str
) -> int:
    """Withhold the values of the columns ``withhold`` names from the stored Great Expectations
    results of the deliveries whose batches are ``labels`` (and their parts, every judgment) and
    render their pages again; returns the results changed. The store is listed once."""
    if not docs_dir.is_dir():
        return 0
    results = _results_store(docs_dir)
    batches = re.compile(f"(?:{'|'.join(map(re.escape, labels))})(?:-part[0-9]+)?")
    changed = []
    for key in results.list_keys():
        if key.expectation_suite_identifier.name != suite or not batches.fullmatch(key.batch_identifier):
            continue
        gx_result = results.get(key)
        if _redact_gx_result(gx_result, withhold, placeholder):
            results.set(key, gx_result)
            changed.append((key, gx_result))
    _render_validation_pages(docs_dir, changed)
    return len(changed)


# The site's index lists the newest validations only: each write reads them back. Older pages
# stay, linked from their delivery's materialisation in the UI.
DATA_DOCS_INDEX_VALIDATIONS = 30
# Page views that compile GX's templates once per process (pipelines/ingest/data_docs_views.py).
DATA_DOCS_VIEWS = "pipelines.ingest.data_docs_views"


@cache
def _docs_site(docs_dir: str) -> tuple[str, str]:
    """The Data Docs site in ``docs_dir`` and the store of the validation results it renders.

    The results are kept on disk beside the site (``.<site>.validations``): GX removes every page
    whose result its store does not hold, and a run's own context holds only that run's results,
    so each build deleted the pages of all earlier ones.
    """
    _, context, _ = _gx()
    number = len(context.list_data_docs_sites())
    store = f"mirocals_validations_{number}"
    results = Path(docs_dir).parent / f".{Path(docs_dir).name}.validations"
    context.add_store(store, {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(results)},
    })
    site = f"site_{number}"
    context.add_data_docs_site(
        site_name=site,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                   "validation_results_limit": DATA_DOCS_INDEX_VALIDATIONS,
                                   "view": {"module_name": DATA_DOCS_VIEWS, "class_name": "IndexPageView"}},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
            "site_section_builders": {
                "profiling": "None",
                "validations": {"class_name": "DefaultSiteSectionBuilder", "source_store_name": store,
                                "renderer": {"class_name": "ValidationResultsPageRenderer"},
                                "view": {"module_name": DATA_DOCS_VIEWS, "class_name": "PageView"}},
                "expectations": {"view": {"module_name": DATA_DOCS_VIEWS, "class_name": "PageView"}},
            },
        },
    )
    return site, store


def _results_store(docs_dir: Path) -> Any:
    """GX's store of the validation results the Data Docs site in ``docs_dir`` renders."""
    _, store = _docs_site(str(docs_dir.resolve()))
    return _gx()[1].stores[store]


@cache
def _site_builder(docs_dir: str) -> Any:
    """GX's builder of the Data Docs site in ``docs_dir``, made once per process (GX makes one
    per ``build_data_docs`` call). Its static assets (styles, scripts) are copied here, once."""
    site, _ = _docs_site(docs_dir)
    _, context, _ = _gx()
    # GX's own factory of the builder that build_data_docs uses (great-expectations is pinned)
    builder = context._init_site_builder_for_data_docs_site_creation(site, context.variables.data_docs_sites[site])
    builder.target_store.copy_static_assets()
    return builder


@dataclass(frozen=True)
class PendingPages:
    """A judgment's Great Expectations results, stored for the Data Docs site, whose pages are
    not rendered yet: ``note`` (beside the site) names them from before the judgment is committed
    to the warehouse until they are rendered (:func:`render_pending_pages`)."""

    note: Path
    stored: list[tuple[Any, Any]]  # (ValidationResultIdentifier, GX result)


def _pending_notes(docs_dir: Path) -> Path:
    return docs_dir.parent / f".{docs_dir.name}.pending"


def store_validation_results(
    result: SuiteResult, docs_dir: Path, label: str, delivery_id: int, judged_at: datetime
) -> PendingPages:
    """Store a delivery's validation results for the Data Docs site in ``docs_dir`` and note
    their pages as pending. Called in the transaction that stores the judgment, before its
    commit: a build stopped after the commit (or whose pages could not be rendered) leaves the
    note, and the next build renders the pages from the stored results; one stopped before the
    commit leaves results of a judgment the warehouse never stored, which the next build removes
    (:func:`settle_pending_pages`)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    docs_dir.mkdir(parents=True, exist_ok=True)
    results = _results_store(docs_dir)
    stored = []
    for part, gx_result in enumerate(result.gx_results, start=1):
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite),
            run_id=gx_result.meta["run_id"],
            batch_identifier=label if len(result.gx_results) == 1 else f"{label}-part{part}",
        )
        stored.append((key, gx_result))
    notes = _pending_notes(docs_dir)
    notes.mkdir(exist_ok=True)
    note = notes / f"{result.suite}.{label}.{judged_at:%Y%m%dT%H%M%S%f}.json"
    written = note.with_name(f".{note.name}.writing")
    written.write_text(json.dumps({"delivery_id": delivery_id, "judged_at": judged_at.isoformat(),
                                   "keys": [list(key.to_tuple()) for key, _ in stored]}), encoding="utf-8")
    written.replace(note)  # noted before any result is stored: none is ever left unnoted
    pending = PendingPages(note, stored)
    try:
        for key, gx_result in stored:
            results.set(key, gx_result)
    except BaseException:
        discard_pending_pages(docs_dir, pending)
        raise
    return pending


def render_pending_pages(docs_dir: Path, pending: PendingPages) -> list[Path]:
    """Render the pages of a committed judgment's stored results; they are no longer pending."""
    pages = _render_validation_pages(docs_dir, pending.stored)
    pending.note.unlink(missing_ok=True)
    return pages


def discard_pending_pages(docs_dir: Path, pending: PendingPages) -> None:
    """Remove the stored results of a judgment that was not committed, and their note."""
    results = _results_store(docs_dir)
    for key, _ in pending.stored:
        if results.has_key(key):
            results.remove_key(key)
    pending.note.unlink(missing_ok=True)


def pending_pages(docs_dir: Path) -> list[Path]:
    """The notes of the pages still pending in the Data Docs site ``docs_dir``."""
    notes = _pending_notes(docs_dir)
    return sorted(notes.glob("*.json")) if notes.is_dir() else []


@dataclass
class SettledPages:
    """What :func:`settle_pending_pages` did with the pages builds before this one left pending."""

    rendered: list[Path] = field(default_factory=list)  # pages of committed judgments, rendered now
    suites: set[str] = field(default_factory=set)  # suites whose stored results changed: their site pages are stale
    discarded: int = 0  # results of judgments never committed, removed
    lost: list[str] = field(default_factory=list)  # notes removed with nothing left to render from: why
    waiting: list[str] = field(default_factory=list)  # notes kept, not settled now (an error that may pass): why


def settle_pending_pages(docs_dir: Path, committed: Callable[[int, datetime], bool]) -> SettledPages:
    """Render the pending pages builds before this one left whose judgment the warehouse holds
    (``committed(delivery_id, judged_at)``), and remove the stored results of those it does not.
    Each note is settled on its own: one whose note or results cannot be read now (an error of
    the machine), or whose page cannot be rendered, waits for the next build; one cut short
    (the machine stopped while writing it) is removed. One listing of the notes folder (empty,
    bar after a stop)."""
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier
    from great_expectations.exceptions import GreatExpectationsError

    settled = SettledPages()
    notes = _pending_notes(docs_dir)
    if not notes.is_dir():
        return settled
    for unfinished in notes.glob(".*.writing"):
        unfinished.unlink(missing_ok=True)  # a note cut short before any result was stored under it
    results = _results_store(docs_dir)

    def wait(note: Path, error: Exception) -> None:
        settled.waiting.append(f"{note.name}: {type(error).__name__}: {error}")

    def lose(note: Path, error: Exception) -> None:
        settled.lost.append(f"{note.name}: {type(error).__name__}: {error}")
        note.unlink(missing_ok=True)

    for note in pending_pages(docs_dir):
        try:
            record = json.loads(note.read_text(encoding="utf-8"))
            keys = [ValidationResultIdentifier.from_tuple(tuple(key)) for key in record["keys"]]
            judged_at = datetime.fromisoformat(record["judged_at"])
        except OSError as error:
            wait(note, error)
            continue
        except (ValueError, KeyError, TypeError) as error:
            lose(note, error)
            continue
        try:
            if not committed(record["delivery_id"], judged_at):
                discard_pending_pages(docs_dir, PendingPages(note, [(key, None) for key in keys]))
                settled.discarded += len(keys)
                settled.suites.update(key.expectation_suite_identifier.name for key in keys)
                continue
        except Exception as error:
            wait(note, error)
            continue
        try:
            stored = [(key, results.get(key)) for key in keys]
        except (GreatExpectationsError, ValueError) as error:
            lose(note, error)  # a committed judgment whose stored result is gone or cut short
            continue
        except Exception as error:
            wait(note, error)
            continue
        try:
            settled.rendered.extend(render_pending_pages(docs_dir, PendingPages(note, stored)))
            settled.suites.update(key.expectation_suite_identifier.name for key in keys)
        except Exception as error:
            wait(note, error)
    return settled


def _render_validation_pages(docs_dir: Path, stored: list[tuple[Any, Any]]) -> list[Path]:
    """Render the pages of these (key, result) pairs, stored already; returns the pages."""
    from great_expectations.data_context.types.resource_identifiers import SiteSectionIdentifier

    if not stored:
        return []  # nothing to render: the site builder (and its static assets) is not made
    section = _site_builder(str(docs_dir.resolve())).site_section_builders["validations"]
    pages = []
    for key, gx_result in stored:
        html = section.view_class.render(section.renderer_class.render(gx_result), data_context_id=section.data_context_id,
                                         show_how_to_buttons=section.show_how_to_buttons)
        written = section.target_store.set(SiteSectionIdentifier(site_section_name="validations", resource_identifier=key),
                                           html)
        pages.append(docs_dir / Path(written).relative_to(docs_dir.resolve()))
    return sorted(pages)


def write_data_docs_index(docs_dir: Path, suites: Iterable[str]) -> Path:
    """Render the site's index (the newest validations) and the pages of ``suites``, which the
    index links every validation to; returns the index page."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    builder = _site_builder(str(docs_dir.resolve()))
    builder.site_section_builders["expectations"].build(
        resource_identifiers=[ExpectationSuiteIdentifier(name=suite) for suite in sorted(set(suites))])
    builder.site_index_builder.build()
    return docs_dir / "index.html"
