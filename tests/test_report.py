"""The HTML report renders its plots in a real browser (headless Chromium)."""

import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


def _chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is installed by `make test` (Makefile, install-test)"
    return path


def _rendered(tmp_path, index) -> str:
    result = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000",
         "--virtual-time-budget=5000", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("which", ["blinded", "unblinded"])
def test_report_plots_render_in_chromium(trial, unblinded_trial, tmp_path, which):
    _, built = trial if which == "blinded" else unblinded_trial
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    dom = _rendered(tmp_path, out / "index.html")
    assert 'data-plots-checked="yes"' in dom
    sizes = re.findall(r'<figure class="plot" id="([^"]+)" data-rendered-width="(\d+)" data-rendered-height="(\d+)"', dom)
    plots = {name: (int(w), int(h)) for name, w, h in sizes}
    assert {"deliveries", "CD4CNT", "NFLS", "PNFHC", "nfl-onset"} <= set(plots)
    assert all(w > 300 and h > 150 for w, h in plots.values()), plots
    if which == "blinded":
        assert "TREGPCT" not in plots and "Blinded build" in dom and "Masked arm A" in dom
        assert "ld-IL-2" not in dom and "placebo" not in dom
    else:
        assert "TREGPCT" in plots and "UNBLINDED build" in dom
