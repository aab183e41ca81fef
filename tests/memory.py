"""`python -m harvest ...` run as `run_cli` runs it, with the peak memory (RSS) of that process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, CliResult, harvest_env

# The wrapper waits for the harvester alone, so RUSAGE_CHILDREN is that one process's peak.
_WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "peak_kb": peak_kb}))
"""


def run_cli_peak(*args: object, env: dict | None = None, timeout: float = 600) -> tuple[CliResult, float]:
    """(the command's result, its peak resident memory in MB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "harvest", *map(str, args)],
        cwd=ROOT,
        env=env or harvest_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return CliResult(out["rc"], out["stdout"], out["stderr"]), out["peak_kb"] / 1024
