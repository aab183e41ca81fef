"""One CLI, one version: `--version` and the aliases of the older entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import tomllib

import harvest
from tests.conftest import ROOT, run_cli


def test_version_is_written_once_and_printed_by_the_cli():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert importlib.metadata.version("ketamine-catalog") == harvest.__version__
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"ketamine-catalog, version {harvest.__version__}\n")


def test_version_works_from_the_source_tree_without_the_package_metadata(tmp_path):
    # A checkout used through PYTHONPATH alone (no install): the version must not come from metadata.
    code = (
        "import importlib.metadata as m\n"
        "def missing(name): raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "from harvest.cli import cli\n"
        "cli(['--version'], prog_name='harvest')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, f"ketamine-catalog, version {harvest.__version__}\n"), done.stderr


def test_every_command_is_a_subcommand_of_harvest():
    result = run_cli("--help")
    for command in ("run", "import", "status", "export", "retag", "evaluate", "train-tagger", "query"):
        assert f"  {command} " in result.stdout, command
    alias = subprocess.run(
        [sys.executable, "-m", "harvest.train_tagger", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert alias.returncode == 0 and alias.stdout.startswith("Usage: python -m harvest train-tagger")
