"""What a generator run produced: files, injected faults and cohort counts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_RELPATH = "_generator/report.json"

#: Every fault kind the generator can inject.
FAULT_KINDS = (
    "duplicate_row",
    "unit_spelling",
    "below_lloq",
    "unknown_sample",
    "out_of_window",
    "not_randomised",
    "correction",
)


@dataclass(frozen=True)
class GeneratedFile:
    """One delivery file written to the landing zone."""

    family: str
    path: str  # relative to the landing zone root, posix separators
    rows: int


@dataclass(frozen=True)
class InjectedFault:
    """One deliberately injected (or deliberately recorded) irregularity."""

    family: str
    file: str
    row_number: int | None  # 1-based row in ``file``; None for manifest-level faults
    sample_id: str | None
    kind: str
    detail: str


@dataclass(frozen=True)
class GenerationReport:
    """Summary of one generated landing zone."""

    files: list[GeneratedFile]
    faults: list[InjectedFault]
    n_entered: int
    n_randomised: int
    n_per_arm: dict[str, int]
    n_deaths_per_arm: dict[str, int] = field(default_factory=dict)
    n_withdrawn: int = 0
    n_samples: int = 0
    seed: int = 0
    scale: float = 1.0
    genes: int = 0

    def faults_of(self, kind: str) -> list[InjectedFault]:
        """Faults of one kind, in report order."""
        return [f for f in self.faults if f.kind == kind]

    def files_of(self, family: str) -> list[GeneratedFile]:
        """Files of one delivery family, in delivery order."""
        return [f for f in self.files if f.family == family]

    def to_dict(self) -> dict:
        """A JSON-ready dictionary."""
        return asdict(self)

    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> GenerationReport:
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(
            **{
                **data,
                "files": [GeneratedFile(**f) for f in data["files"]],
                "faults": [InjectedFault(**f) for f in data["faults"]],
            }
        )

    @classmethod
    def read(cls, out: Path) -> GenerationReport:
        """Read the report a run wrote under ``out``."""
        return cls.from_dict(json.loads((Path(out) / REPORT_RELPATH).read_text(encoding="utf-8")))
