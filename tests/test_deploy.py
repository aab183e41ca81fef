"""The scheduling examples in deploy/, run as committed against the E-utilities stand-in.

CI has no cron, systemd or GitHub runner: each test reads the command out of the committed
file (the cron line, the unit's ExecStart/ExecStartPost, the workflow's `run:` steps), swaps
the install path /srv/ketamine-catalog for a scratch checkout, and runs exactly that command
with CATALOG_DB and NCBI_EUTILS_URL pointing at a scratch catalog and the stand-in.
"""

from __future__ import annotations

import configparser
import datetime as dt
import fcntl
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
INSTALL = "/srv/ketamine-catalog"


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A stand-in for /srv/ketamine-catalog: the project's code and virtualenv, its own db/."""
    home = tmp_path / "srv" / "ketamine-catalog"
    (home / "db").mkdir(parents=True)
    (home / "harvest").symlink_to(ROOT / "harvest")
    if sys.prefix != sys.base_prefix:  # a virtualenv, as `make install` makes: use it whole
        (home / ".venv").symlink_to(sys.prefix)
    else:
        (home / ".venv" / "bin").mkdir(parents=True)
        (home / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return home


def base_env(tmp_path: Path, server_url: str, **extra: str) -> dict:
    """What a scheduler gives a job: almost nothing (no PYTHONPATH, no virtualenv)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "NCBI_EUTILS_URL": server_url,
        "NCBI_BACKOFF_BASE": "0.05",
        "NCBI_BACKOFF_CAP": "1",
        # PubMed's stand-in only: the jobs must not reach the real ClinicalTrials.gov.
        "HARVEST_SOURCES": "pubmed",
    }
    # ...but the clock the test runs on (make test's shifted-clock pass): the job must see the
    # same "now" as the test that ages its runs.
    env.update(
        {k: v for k, v in os.environ.items() if k in ("LD_PRELOAD", "HARVEST_TODAY") or k.startswith("FAKETIME")}
    )
    env.update(extra)
    return env


def local(text: str, home: Path) -> str:
    return text.replace(INSTALL, str(home))


def articles(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select count(*) from articles").fetchone()[0]
    finally:
        conn.close()


def runs(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select id, mode, status from harvest_runs order by id").fetchall()
    finally:
        conn.close()


# -- cron ---------------------------------------------------------------------------------------


def read_crontab(path: Path) -> tuple[dict, list[tuple[list[str], str]]]:
    env, jobs = {}, []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assignment:
            env[assignment.group(1)] = assignment.group(2)
        else:
            *schedule, command = line.split(None, 5)
            jobs.append((schedule, command))
    return env, jobs


@pytest.mark.dated
def test_cron_line_as_committed(tmp_path, checkout, records_server):
    cron_env, jobs = read_crontab(DEPLOY / "crontab")
    [(schedule, command)] = jobs
    assert len(schedule) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in schedule)
    assert "%" not in command  # cron would cut the command there
    assert ".venv/bin/python -m harvest run" in command and "-m harvest status --max-age" in command
    assert cron_env["CATALOG_DB"] == f"{INSTALL}/db/catalog.db" and "NCBI_API_KEY" not in cron_env

    db = checkout / "db" / "catalog.db"
    env = base_env(
        tmp_path,
        records_server.url,
        **{**{k: local(v, checkout) for k, v in cron_env.items()}, "CATALOG_DB": str(db), "NCBI_MAX_TRIES": "2"},
    )

    def cron() -> subprocess.CompletedProcess:
        # cron runs the command with /bin/sh in the user's home; what it prints, cron mails.
        return subprocess.run(
            ["/bin/sh", "-c", local(command, checkout)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = cron()
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")  # a good night mails nothing
    assert articles(db) == len(records_server.corpus) == 215
    log = (checkout / "harvest.log").read_text()
    assert re.search(r"^run 1 \(full \(new catalog\)\): 215 records promised", log, re.M)

    # Overlap: another harvest holds the lock. One line says so; the catalog is still current.
    with open(f"{db}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        overlapped = cron()
    assert overlapped.returncode == 0
    assert overlapped.stdout.startswith("harvest: error: another harvest is already running on")
    assert overlapped.stdout.count("\n") == 1 and overlapped.stderr == ""

    # PubMed down, and the last success three days old: the failure line, then the staleness.
    records_server.faults.add("503", times=None)
    conn = sqlite3.connect(db)
    conn.execute(
        "update harvest_runs set finished_at = ? where status = 'success'",
        [(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).isoformat(timespec="seconds")],
    )
    conn.commit()
    conn.close()
    failed = cron()
    assert failed.returncode == 4
    assert re.fullmatch(r"harvest: error: run 2 failed: .+\n", failed.stdout)
    assert re.fullmatch(r"harvest: error: the last successful harvest finished .+ ago \(limit 2d\)\n", failed.stderr)
    assert runs(db) == [(1, "full (new catalog)", "success"), (2, "incremental", "failed")]
    # The run log shows it to `harvest status` and, through the harvest_health view, to the front page.
    status = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-m", "harvest", "status"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert re.search(r"^  #2 \S+ failed\s+incremental", status.stdout, re.M) and "      error: " in status.stdout
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    health = dict(conn.execute("select * from harvest_health").fetchone())
    conn.close()
    assert (health["last_success_run"], health["last_failure_run"], health["failing_since_last_success"]) == (1, 2, 1)
    assert health["last_failure_status"] == "failed" and health["last_failure_error"] and health["running_run"] is None


# -- systemd ------------------------------------------------------------------------------------


class _CaseKeepingParser(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:  # systemd's keys are case-sensitive
        return optionstr


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = _CaseKeepingParser(interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    unit.read_string(path.read_text())
    return unit


def unit_environment(value: str) -> dict:
    return dict(item.split("=", 1) for item in shlex.split(value))


def test_systemd_service_and_timer_as_committed(tmp_path, checkout, records_server):
    service = read_unit(DEPLOY / "ketamine-harvest.service")["Service"]
    timer = read_unit(DEPLOY / "ketamine-harvest.timer")
    assert service["Type"] == "oneshot"
    assert timer["Timer"]["Unit"] == "ketamine-harvest.service" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze"):
        check = subprocess.run(
            ["systemd-analyze", "calendar", timer["Timer"]["OnCalendar"]], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
    environment = unit_environment(service["Environment"])
    # The hardened unit may write only ReadWritePaths: the catalog, its lock and WAL live there.
    assert service["ProtectSystem"] == "strict"
    assert str(Path(environment["CATALOG_DB"]).parent) in service["ReadWritePaths"].split()
    assert service["EnvironmentFile"].startswith("-")  # the API key file is optional
    start, post = shlex.split(service["ExecStart"]), shlex.split(service["ExecStartPost"])
    assert start[0].startswith("/") and start[1:] == ["-m", "harvest", "run"]
    assert post[0] == start[0] and post[1:4] == ["-m", "harvest", "status"] and "--max-age" in post

    db = checkout / "db" / "catalog.db"
    env = base_env(
        tmp_path,
        records_server.url,
        **{**{k: local(v, checkout) for k, v in environment.items()}, "CATALOG_DB": str(db)},
    )
    cwd = local(service["WorkingDirectory"], checkout)

    def start_unit() -> list[subprocess.CompletedProcess]:
        done = []
        for key in ("ExecStart", "ExecStartPost"):  # systemd runs ExecStartPost only after a good start
            done.append(
                subprocess.run(
                    shlex.split(local(service[key], checkout)),
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            )
            if done[-1].returncode != 0:
                break
        return done

    harvest, status = start_unit()
    assert harvest.returncode == 0 and status.returncode == 0, harvest.stderr + status.stderr
    assert harvest.stdout.startswith("run 1 (full (new catalog)): 215 records promised")
    assert "recent runs:" in status.stdout and "#1 " in status.stdout
    harvest, status = start_unit()  # the next night: an incremental run
    assert harvest.stdout.startswith("run 2 (incremental)") and status.returncode == 0
    assert articles(db) == 215


# -- GitHub Actions -----------------------------------------------------------------------------

FAKE_GH = '''\
#!{python}
"""A stand-in for the `gh` CLI: one release, kept in a folder."""
import pathlib, shutil, sys
store = pathlib.Path({store!r})
args = sys.argv[1:]
with open(store / "calls.log", "a") as log:
    log.write(" ".join(args) + "\\n")
assets = store / "release"
if args[:2] == ["release", "view"]:
    sys.exit(0 if assets.is_dir() else 1)
if args[:2] == ["release", "create"]:
    assets.mkdir()
elif args[:2] == ["release", "upload"]:
    shutil.copy(args[3], assets / pathlib.Path(args[3]).name)
elif args[:2] == ["release", "download"]:
    pattern, folder = args[args.index("--pattern") + 1], args[args.index("--dir") + 1]
    shutil.copy(assets / pattern, pathlib.Path(folder) / pattern)
else:
    sys.exit("fake gh: unexpected " + " ".join(args))
'''


def test_github_workflow_as_committed(tmp_path, checkout, records_server):
    text = (DEPLOY / "github-workflow-harvest.yml").read_text()
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    [cron] = triggers["schedule"]
    assert len(cron["cron"].split()) == 5 and "workflow_dispatch" in triggers
    job = workflow["jobs"]["harvest"]
    assert job["env"]["NCBI_API_KEY"] == "${{ secrets.NCBI_API_KEY }}"
    assert workflow["permissions"] == {"contents": "write"}
    # The database is published as a release asset, never committed.
    for forbidden in ("git commit", "git push", "git add", "add-and-commit", "auto-commit"):
        assert forbidden not in text
    scripts = {step.get("name"): step["run"] for step in job["steps"] if "run" in step}
    assert scripts["Harvest"].strip() == ".venv/bin/python -m harvest run"
    assert "-m harvest status --max-age" in scripts["Check the catalog is current"]
    assert "gh release upload" in scripts["Publish the catalog as a release asset"]

    gh_home = tmp_path / "gh"
    (gh_home / "bin").mkdir(parents=True)
    (gh_home / "bin" / "gh").write_text(FAKE_GH.format(python=sys.executable, store=str(gh_home)))
    (gh_home / "bin" / "gh").chmod(0o755)
    job_env = {k: ("" if "${{" in str(v) else str(v)) for k, v in job["env"].items()}  # unset secrets are ""
    env = base_env(tmp_path, records_server.url, **job_env)
    env["PATH"] = f"{gh_home / 'bin'}:{env['PATH']}"

    def run_job(workspace: Path) -> dict:
        """The job's `run:` steps in order (checkout, setup-python and Install are the checkout fixture)."""
        done = {}
        for name, script in scripts.items():
            if name == "Install":
                continue
            done[name] = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                cwd=workspace,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done[name].returncode == 0, (name, done[name].stdout, done[name].stderr)
        return done

    first = run_job(checkout)
    assert "No release catalog yet: this run is a full harvest." in first["Fetch the last published catalog"].stdout
    assert first["Harvest"].stdout.startswith("run 1 (full (new catalog)): 215 records promised")
    asset = gh_home / "release" / "catalog.db.gz"
    assert asset.is_file()

    # The next night's runner starts from a fresh checkout and the published asset: incremental.
    fresh = tmp_path / "next-night"
    shutil.copytree(checkout, fresh, symlinks=True, ignore=shutil.ignore_patterns("catalog.db*", "dist"))
    second = run_job(fresh)
    assert second["Harvest"].stdout.startswith("run 2 (incremental)")
    published = tmp_path / "published.db"
    subprocess.run(["gunzip", "-c", str(asset)], stdout=published.open("wb"), check=True)
    assert runs(published) == [(1, "full (new catalog)", "success"), (2, "incremental", "success")]
    assert articles(published) == 215
    calls = (gh_home / "calls.log").read_text().splitlines()
    assert [c.split()[1] for c in calls] == ["view", "view", "create", "upload", "view", "download", "view", "upload"]
