"""The Makefile's demo targets write only the demo's own folders.

MIROCALS_LANDING and MIROCALS_WAREHOUSE name the real landing zone and warehouse on a machine
set up for the trial (.env.example); `make demo` deletes and regenerates its folders, so it must
never follow them. `make -n` prints what each target would run without running it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _dry_run(target: str, real: Path) -> str:
    env = {**os.environ, "MIROCALS_LANDING": str(real / "landing"),
           "MIROCALS_WAREHOUSE": str(real / "warehouse" / "mirocals.duckdb")}
    return subprocess.run(["make", "-n", "--no-print-directory", target], cwd=PROJECT, env=env,
                          capture_output=True, text=True, check=True, timeout=60).stdout


def test_make_demo_deletes_and_writes_only_the_demo_folders_whatever_the_environment_names(tmp_path):
    real = tmp_path / "secure"
    commands = _dry_run("demo", real)
    assert str(real) not in commands
    assert f"rm -rf {PROJECT / 'landing'}\n" in commands
    assert f"--out {PROJECT / 'landing'} " in commands
    assert f"--warehouse {PROJECT / 'warehouse' / 'build' / 'mirocals.duckdb'}" in commands
    # the demo's whole warehouse goes, what sits beside the file included: a note of a Data Docs
    # page left pending would name a delivery of the old warehouse
    build = PROJECT / "warehouse" / "build"
    lines = commands.replace("\\\n", " ").splitlines()  # a recipe's lines continued with a backslash, joined
    removed = next(line for line in lines if line.startswith(f"rm -rf {build / 'mirocals.duckdb'} ")).split()
    for left_beside in (".work", "mirocals_data_docs", ".mirocals_data_docs.validations", ".mirocals_data_docs.pending"):
        assert str(build / left_beside) in removed, (left_beside, removed)


def test_make_build_takes_in_the_landing_zone_the_environment_names(tmp_path):
    real = tmp_path / "secure"
    commands = _dry_run("build", real)
    assert f"--landing {real / 'landing'} --warehouse {real / 'warehouse' / 'mirocals.duckdb'}" in commands
    assert "rm -rf" not in commands


def test_make_demo_ends_with_commands_that_can_be_copied_whole_on_a_narrow_terminal(tmp_path):
    warehouse = tmp_path / "a folder with a long name" / "warehouse" / "mirocals.duckdb"
    script = Path(sys.executable).with_name("mirocals")
    printed = subprocess.run([str(script), "next-steps", "--warehouse", str(warehouse)], capture_output=True,
                             text=True, check=True, timeout=60, env={**os.environ, "COLUMNS": "40"}).stdout
    lines = printed.splitlines()
    # the commands name this warehouse (not the default one), quoted as a shell needs it
    named = shlex.quote(str(warehouse))
    for command in ('.venv/bin/mirocals sql "select armcd, count(*) from core.subject where randomised group by all"'
                    f" --warehouse {named}",
                    f".venv/bin/duckdb -readonly {named}", "make ui", "make test"):
        assert f"  {command}" in lines, printed
