"""bench/results.json -> the Markdown tables of bench/RESULTS.md (the README's performance section)."""

from __future__ import annotations


def _ok(value) -> str:
    return "yes" if value else "**no**"


def _load(section: dict) -> str:
    load = section.get("load") or section.get("clones_load") or {}
    text = f"load {load.get('min')}–{load.get('max')} (mean {load.get('mean')})" if load else ""
    return text + (f"; measured {section['from_run']}" if section.get("from_run") else "")


def markdown(results: dict) -> str:
    m = results.get("machine", {})
    s = results.get("sections", {})
    full = results.get("all_sections")
    lines = [
        "## Performance",
        "",
        f"Measured by `make bench` on {results.get('started_at', '?')}: {m.get('cpus')} cores ({m.get('cpu')}), "
        f"{m.get('memory_gib')} GiB, Python {m.get('python')}, SQLite {m.get('sqlite')}, lxml {m.get('lxml')} "
        f"(libxml2 {m.get('libxml2')}). The machine was shared with other jobs while it ran: each section gives "
        f"the 1-minute load average it saw (2.0 means both cores busy before the benchmark's own work). "
        + (
            f"A whole `make bench` took {full['seconds'] / 60:.1f} minutes ({full['at']}, "
            f"{full['clone_files']} clone files). "
            if full
            else ""
        )
        + "Every figure is in `bench/results.json`; sections measured in separate runs say when.",
        "",
    ]
    goals: list[tuple[str, bool]] = []
    if "requests" in s:
        r = s["requests"]
        lines += [
            f"### Requests to E-utilities ({r['records']:,} records, efetch batch {r['efetch_batch']}; {_load(r)})",
            "",
            "| run | records fetched | esearch | efetch | requests | minimum | requests per 1,000 records |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("full", "full harvest"),
            ("incremental_0", "incremental, nothing changed"),
            ("incremental_50", "incremental, 50 records revised"),
        ):
            run = r[key]
            per = run.get("per_1000_records", "")
            lines.append(
                f"| {label} | {run['records_promised']:,} | {run['esearch']} | {run['efetch']} | "
                f"{run['requests']} | {run['minimum']} | {per} |"
            )
        lines += [
            "",
            f"Minimum = ceil(records / 9,999) esearch slices + ceil(records / batch) efetches; "
            f"the full harvest used {r['full']['over_minimum_pct']}% more.",
            "",
        ]
        g = r["goals"]
        goals += [
            ("Full harvest within 10% of the minimum requests", g["full_within_10pct_of_minimum"]),
            ("No-change incremental run in at most 3 requests", g["no_change_incremental_at_most_3"]),
        ]
    if "citations" in s:
        c = s["citations"]
        lines += [
            f"### Requests to OpenAlex ({c['records']:,} records, {c['pmids_per_request']} PMIDs a request; "
            f"due weekly, the newest {c['newest_days']} days daily)",
            "",
            "| run | records due | of them newest | requests |",
            "| --- | ---: | ---: | ---: |",
        ]
        for i, day in enumerate(c["days"]):
            label = "first read (day 0)" if i == 0 else "rerun, day 0" if i == 1 else f"day {day['day']}"
            lines.append(f"| {label} | {day['due']:,} | {day['newest']} | {day['requests']} |")
        lines += [
            "",
            f"Requests per 1,000 records: {c['first_read_requests_per_1000']} for the first read (the minimum is "
            f"{c['minimum_per_1000']}), {c['week_requests_per_1000']} for each week of daily runs after it.",
            "",
        ]
        goals += [
            ("First citations read at the minimum requests", c["goals"]["first_read_at_minimum"]),
            ("A same-day citations rerun asks nothing", c["goals"]["rerun_same_day_asks_nothing"]),
        ]
    if "parse" in s:
        p = s["parse"]
        lines += [
            f"### Parsing PubMed XML (clones of the shared records; {_load(p)})",
            "",
            "| parser | records in file | records/s | peak memory growth (MiB) | fields per record |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for _key, run in sorted(p["best"].items(), key=lambda kv: (kv[1]["file_records"], -kv[1]["records_per_s"])):
            lines.append(
                f"| {p['labels'][run['parser']]} | {run['file_records']:,} | {run['records_per_s']:,} | "
                f"{run['peak_growth_mib']} | {run['fields']} |"
            )
        lines += [
            "",
            "Best of the runs in the same minutes (all runs are in the JSON). Memory is the peak resident "
            "size above the size after imports; fields are the distinct leaf fields of the first record.",
            "",
        ]
        g = p["goals"]
        goals += [
            ("Parser faster than pubmed_parser and Bio.Entrez", g["faster_than_both"]),
            ("Parser extracts more fields than pubmed_parser", g["more_fields_than_pubmed_parser"]),
            ("Parser peak memory flat from 30k to 120k records", g["peak_memory_flat"]),
        ]
    if "match" in s:
        mt = s["match"]
        best = mt["best"]
        lines += [
            f"### `import --match-topic` of a baseline-sized file ({mt['records']:,} cloned real records, "
            f"{mt['file_mib']} MiB gzip; {_load(mt)})",
            "",
            "| command (wall-clock, as a user runs it) | seconds | ratio to `zcat` |",
            "| --- | ---: | ---: |",
            f"| `zcat FILE > /dev/null` | {best['zcat']} | 1.0 |",
            f"| `python -m harvest --version` (start-up alone) | {best['startup']} | "
            f"{round(best['startup'] / best['zcat'], 2)} |",
            f"| `python -m harvest import --match-topic FILE` into a new catalog | {best['import']} | "
            f"{mt['ratio_to_zcat']} |",
            "",
            f"Best of {len(mt['runs']['import'])} alternating runs (all are in the JSON); the goal is at most "
            f"{mt['goal_ratio']} times `zcat`. The import said: {mt['import_summary']}",
            "",
        ]
        goals.append(
            (f"`import --match-topic` within {mt['goal_ratio']}x `zcat`", mt["goals"]["match_topic_within_2x_zcat"])
        )
    if "import" in s:
        i = s["import"]
        cli, pool, pp = i["shared_cli"], i["shared_pool2"], i["shared_pubmed_parser"]
        big, bpp = i["clones_pool2"], i["clones_pubmed_parser"]
        lines += [
            f"### Import into the full catalog schema ({_load(i)})",
            "",
            "| what | records | seconds | records/s |",
            "| --- | ---: | ---: | ---: |",
            f"| shared .gz files, `harvest import` (one process) | {cli['records']:,} | {cli['seconds']} | {cli['records_per_s']:,} |",
            f"| same files, 2 worker processes + writer | {pool['records']:,} | {pool['seconds']} | {pool['records_per_s']:,} |",
            *(
                [
                    f"| same files, dask local cluster, 2 workers + writer (`--engine dask`, start-up included) | "
                    f"{i['shared_dask2']['records']:,} | {i['shared_dask2']['seconds']} | {i['shared_dask2']['records_per_s']:,} |"
                ]
                if "shared_dask2" in i  # results from before the dask engine have no such row
                else []
            ),
            f"| same files, pubmed_parser parse only | {pp['records']:,} | {pp['seconds']} | {pp['records_per_s']:,} |",
            f"| {big['files']} clone files, 2 worker processes + writer | {big['records']:,} | {big['seconds']} | {big['records_per_s']:,} |",
            f"| same clone files, pubmed_parser parse only (estimated from {bpp['records']:,}) | {big['records']:,} | "
            f"{bpp['estimated_seconds_all']} | {bpp['records_per_s']:,} |",
            *(
                [
                    f"| `harvest {command}` of the {big['records']:,}-record clone catalog | "
                    f"{i[f'clones_{command}']['records']:,} | {i[f'clones_{command}']['seconds']} | "
                    f"{i[f'clones_{command}']['records_per_s']:,} |"
                    for command in ("retag", "rebuild")
                ]
                if "clones_retag" in i
                else []
            ),
            "",
            *(
                [
                    f"One process against pubmed_parser's parse alone: {i['shared_one_process_ratio_to_pubmed_parser']} "
                    f"times its time (goal: at most 1.0); with 2 workers {big['records_per_s']:,} records/s "
                    "(goal: at least 5,000)."
                ]
                if "shared_one_process_ratio_to_pubmed_parser" in i
                else []
            ),
            f"Speed-up of the process pool on this 2-core machine: {i['shared_speedup_2_workers']}x. "
            f"Time per record, first and last clone file: {i['clones_ms_per_record_first_last']} ms.",
            "",
        ]
        g = i["goals"]
        goals += [
            (
                "Import no slower than pubmed_parser's parse of the same files",
                g["shared_import_not_slower_than_pubmed_parser_parse"]
                and g["clones_import_not_slower_than_pubmed_parser_parse"],
            ),
            ("Import at least 5,000 records/s end to end", g["at_least_5000_records_per_s"]),
            *(
                [("Retag and rebuild at least 5,000 records/s", g["retag_and_rebuild_at_5000_records_per_s"])]
                if "retag_and_rebuild_at_5000_records_per_s" in g
                else []
            ),
            ("Import time per record flat as the catalog grows", g["time_per_record_flat"]),
        ]
    if "catalog" in s:
        c = s["catalog"]
        b = c["build"]
        lines += [
            f"### Catalog latency at {b['articles']:,} articles (`datasette serve` with db/'s configuration; "
            f"{c['concurrency']} concurrent loopback clients; every page made, not replayed from the page cache; "
            f"{_load(c)})",
            "",
            "| page | p50 (ms) | p95 (ms) | requests | errors |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, v in c["latency"].items():
            lines.append(
                f"| {name} (`{v['example'][:80]}`) | {v['p50_ms']:,} | {v['p95_ms']:,} | {v['requests']} | {v['errors']} |"
            )
        reused = (
            f" on {b['reused_from']}, kept in BENCH_DIR and brought up to date for this run (migrations "
            f"{b['seconds_on_reuse']['migrations']} s, summaries {b['seconds_on_reuse']['summaries']} s)"
            if b.get("reused_from")
            else ""
        )
        lines += [
            "",
            f"Built in {b['seconds']['total']} s by copying an imported catalog {b['copies']} times at the SQL "
            f"level{reused} ({b['db_gib']} GiB); errors are answers other than 200 (Datasette's time limits).",
            "",
        ]
        pre = b.get("preprints") or {}
        if pre.get("link_seconds") is not None:
            lines += [
                f"Beside them {pre['preprints']:,} preprints (clones of Europe PMC's recorded real ones), stored and "
                f"tagged in {pre['save_seconds']} s and linked to the million records by DOI and title in "
                f"{pre['link_seconds']} s ({pre['link_ms_per_preprint']} ms a preprint; every preprints run links again).",
                "",
            ]
        elif pre.get("preprints"):
            lines += [f"Beside them {pre['preprints']:,} preprints, stored by an earlier run.", ""]
        g = c["goals"]
        goals += [
            ("Search and article pages p95 under 200 ms", g["search_and_article_p95_under_200ms"]),
            ("Faceted articles pages p95 under 500 ms", g["faceted_p95_under_500ms"]),
            *(
                [("Evidence map p95 under 500 ms", g["evidence_map_p95_under_500ms"])]
                if "evidence_map_p95_under_500ms" in g
                else []
            ),
            ("Canned queries p95 under 500 ms", g["canned_queries_p95_under_500ms"]),
        ]
    if goals:
        lines += ["### Goals", "", "| goal | holds |", "| --- | --- |"]
        lines += [f"| {name} | {_ok(ok)} |" for name, ok in goals]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import json
    from pathlib import Path

    print(markdown(json.loads((Path(__file__).parent / "results.json").read_text())))
