"""The study definition and delivery contracts, read from ``schemas/``.

Everything about the trial's design (sites, arms, visits, parameters, analysis rules)
and every delivery family's contract lives in YAML under ``schemas/``; this module is
the only reader of those files.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
WAREHOUSE_SQL_DIR = PROJECT_ROOT / "warehouse" / "models"


@dataclass(frozen=True)
class Site:
    siteid: str
    name: str
    country: str


@dataclass(frozen=True)
class Visit:
    visit_code: str
    visit_num: int
    label: str
    study_day: int
    window_lo: int
    window_hi: int
    matrices: tuple[str, ...]


@dataclass(frozen=True)
class Parameter:
    paramcd: str
    param: str
    family: str
    source: dict[str, str]
    matrix: str
    unit: str
    units: dict[str, float]
    plausible: tuple[float, float]
    visits: tuple[str, ...]
    lloq: float | None = None
    uloq: float | None = None
    treatment_revealing: bool = False
    # False for a scale where ratios mean nothing (a z-score): no PCHG or R2BASE in ADBM
    ratio_scale: bool = True


@dataclass(frozen=True)
class Study:
    studyid: str
    raw: dict[str, Any]
    sites: tuple[Site, ...]
    arms: tuple[dict[str, str], ...]
    visits: tuple[Visit, ...]
    parameters: tuple[Parameter, ...]

    def visit(self, code: str) -> Visit:
        return next(v for v in self.visits if v.visit_code == code)

    def parameter(self, paramcd: str) -> Parameter:
        return next(p for p in self.parameters if p.paramcd == paramcd)

    def parameters_of(self, family: str) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.family == family)

    @property
    def armcds(self) -> tuple[str, ...]:
        return tuple(a["armcd"] for a in self.arms)

    @property
    def strata(self) -> dict[str, Any]:
        return self.raw["strata"]

    @property
    def analysis(self) -> dict[str, Any]:
        return self.raw["analysis"]

    @property
    def gene_expression(self) -> dict[str, Any]:
        return self.raw["gene_expression"]

    def revealing_genes(self, field: str = "symbol") -> tuple[str, ...]:
        """Symbols (or, with ``field="gene_id"``, Ensembl ids) of the treatment-revealing genes."""
        return tuple(gene[field] for gene in self.raw["blinding"]["treatment_revealing_genes"])

    def revealing_gene_names(self) -> tuple[str, ...]:
        """Every name a treatment-revealing gene may be delivered under: its symbol, aliases and
        ids other than Ensembl's (HGNC, Entrez)."""
        return tuple(
            name
            for gene in self.raw["blinding"]["treatment_revealing_genes"]
            for name in (gene["symbol"], *gene["aliases"], *map(str, gene["other_ids"]))
        )


@dataclass(frozen=True)
class ColumnContract:
    name: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True)
class FamilyContract:
    family: str
    kind: str
    folder: str
    mode: str
    key: tuple[str, ...]
    suite: str
    description: str
    columns: tuple[ColumnContract, ...] = field(default_factory=tuple)
    cluster_by: str | None = None  # column the raw table is stored sorted by, per delivery
    index_repeated_keys: bool = False  # list rows whose key repeats in audit.repeated_key_row
    refusals_quote_values: bool = True  # a refused file's reason quotes the values that failed

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


@dataclass(frozen=True)
class Contracts:
    families: dict[str, FamilyContract]
    personal_data_patterns: tuple[re.Pattern[str], ...]
    ignored_name_notes: re.Pattern[str]  # how a value is written, not what it is: (dd/mm/yyyy), _yyyy, 's
    name_separators: re.Pattern[str]  # where one column name joins several: Initials/DOB, Nom & Prénom
    # a copy's number or qualifier at the end of a name: dob1, DOB.1, surname_2, first_name_clean
    ignored_name_suffixes: re.Pattern[str] = re.compile(r"(?!)")

    def __getitem__(self, family: str) -> FamilyContract:
        return self.families[family]

    def families_with_columns(self, columns: set[str]) -> list[FamilyContract]:
        """Families whose required columns are all among ``columns`` (lower-case names)."""
        return [f for f in self.families.values() if set(f.required_columns) <= columns]

    def is_personal_data(self, column: str) -> bool:
        """Whether ``column`` (a column name or a map key), or any name it joins, names personal data;
        each name is judged as it is and without a copy's number or qualifier at its end."""
        return any(p.search(name) for name in self.names_in(column) for p in self.personal_data_patterns)

    def names_in(self, column: str) -> list[str]:
        """The names ``column`` joins, as the personal-data patterns read them: unaccented, lowercased,
        without notes (brackets, date format hints, possessive 's) and non-alphanumerics."""
        unaccented = "".join(c for c in unicodedata.normalize("NFKD", column) if not unicodedata.combining(c))
        read = self.ignored_name_notes.sub(" ", unaccented.lower())
        names = []
        for part in self.name_separators.split(read):
            part = part.strip()
            names.append(re.sub(r"[^a-z0-9]", "", part))
            while (bare := self.ignored_name_suffixes.sub("", part)) != part:
                part = bare
                names.append(re.sub(r"[^a-z0-9]", "", part))
        return list(dict.fromkeys(name for name in names if name))


def _read_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS_DIR / name).read_text(encoding="utf-8"))


@cache
def load_study() -> Study:
    """Read ``schemas/study.yaml``."""
    raw = _read_yaml("study.yaml")
    return Study(
        studyid=raw["study"]["studyid"],
        raw=raw,
        sites=tuple(Site(**s) for s in raw["sites"]),
        arms=tuple(raw["arms"]),
        visits=tuple(Visit(**{**v, "matrices": tuple(v["matrices"])}) for v in raw["visits"]),
        parameters=tuple(
            Parameter(
                **{
                    **p,
                    "plausible": tuple(p["plausible"]),
                    "visits": tuple(p["visits"]),
                    "units": {str(k): float(v) for k, v in p["units"].items()},
                }
            )
            for p in raw["parameters"]
        ),
    )


@cache
def load_contracts() -> Contracts:
    """Read ``schemas/deliveries.yaml``."""
    raw = _read_yaml("deliveries.yaml")
    families = {
        name: FamilyContract(
            family=name,
            kind=f["kind"],
            folder=f["folder"],
            mode=f["mode"],
            key=tuple(f["key"]),
            suite=f["suite"],
            description=f["description"],
            columns=tuple(
                ColumnContract(name=c, type=spec["type"], required=spec["required"], description=spec["description"])
                for c, spec in f["columns"].items()
            ),
            cluster_by=f.get("cluster_by"),
            index_repeated_keys=bool(f.get("index_repeated_keys", False)),
            refusals_quote_values=bool(f.get("refusals_quote_values", True)),
        )
        for name, f in raw["families"].items()
    }
    personal = raw["personal_data"]
    return Contracts(
        families=families,
        personal_data_patterns=tuple(re.compile(p) for p in personal["forbidden_name_patterns"]),
        ignored_name_notes=re.compile("|".join(personal["ignored_name_notes"])),
        name_separators=re.compile("|".join(personal["name_separators"])),
        ignored_name_suffixes=re.compile("(?:" + "|".join(personal["ignored_name_suffixes"]) + ")$"),
    )
