#!/usr/bin/env python
"""How much faster `comments` reads history with its partitions read side by side (standalone).

Two goals, at 100 ms per API call (the emulator's `latency_ms`):

- sources: 4 sources of M comments each, read in one window each, at least 3.5x one such source
  (records per second; each source is one partition);
- windows: one source of N comments read in windows (`comments_window_days`) at least 3x the same
  source read in one window.

The emulator runs in this process. Its world gets extra sources, each in a single-source dataset of
its own, each of M (or N) comments spread evenly over --span-days from 2024-01-01, in projects of
their own so that the connector's `project` selects them. Before any timing, every comment those
sources serve is generated once and kept (the emulator otherwise builds each comment on every call,
which costs more CPU than the 100 ms of latency: the measure would be the emulator's); that pass
also gives the uids each run must deliver. The connector runs as a subprocess (`source-commsmining
read`), its stdout to a file whose RECORD lines are then checked: every comment of the selected
sources from `start_date` (2024-01-01), each exactly once. One more run (a figure, no goal) reads the
large source in windows without `start_date`, i.e. from 1970: the cost of the empty windows.

    .venv/bin/python benchmarks/comments_history_bench.py --comments 5000 --source-comments 2000 --output /tmp/quick.json
    .venv/bin/python benchmarks/comments_history_bench.py --output /tmp/full.json   # 100,000 and 4 x 25,000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import orjson

from commsmining_emulator import Emulator
from commsmining_emulator import generator as g
from commsmining_emulator import server
from commsmining_emulator.world import Dataset
from run import process_cpu_s  # benchmarks/run.py, beside this script

BIN = os.path.dirname(sys.executable)
CONNECTOR = os.path.join(BIN, "source-commsmining")
BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DAY_MS = 86_400_000
START_DATE = "2024-01-01T00:00:00Z"
ONE_WINDOW_DAYS = 36500  # longer than the whole history: one window per source
SOURCES_GOAL = 3.5
WINDOWS_GOAL = 3.0


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


def add_source(emu: Emulator, project: str, name: str, comments: int, span_days: float) -> None:
    """A source of `comments` generated comments over `span_days`, in a dataset of its own, its comments kept once built."""
    world = emu.world
    with world.lock:
        created = BASE_MS - 30 * DAY_MS
        src = world._src(project, name, name, "History benchmark source.", created)
        step_ms = max(1, int(span_days * DAY_MS / max(comments, 1)))
        did = g.mix64(world.seed, g.str_salt("dataset:%s/%s" % (project, name)))
        ds = Dataset(world, project, name + "-ds", did, [src], [0], comments, BASE_MS, step_ms, created,
                     name, "History benchmark dataset.")
        world.datasets[(project, ds.name)] = ds
    built, build = {}, ds.comment

    def comment(i):
        c = built.get(i)
        if c is None:
            c = built[i] = build(i)
        return c

    ds.comment = comment


def keep_thread_properties() -> None:
    """The export's thread properties of a comment, computed once (as the comments themselves)."""
    computed, compute = {}, server.thread_properties

    def thread_properties(c):
        found = computed.get(c["uid"])
        if found is None:
            found = computed[c["uid"]] = compute(c)
        return found

    server.thread_properties = thread_properties


def served_uids(emu: Emulator, project: str, from_ms) -> set:
    """The uids the export serves for every source of `project` from `from_ms` (None: from the beginning), without HTTP."""
    world, uids = emu.world, set()
    for (owner, _), src in list(world.sources.items()):
        if owner != project:
            continue
        after = None
        while True:
            body = world.export(src, from_ms, None, after, 256)
            for c in body["comments"]:
                server.thread_properties(c)
                uids.add(c["uid"])
            after = body["continuation"]
            if not after:
                break
    return uids


def catalog() -> dict:
    return {"streams": [{
        "stream": {"name": "comments", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
                   "source_defined_cursor": True, "default_cursor_field": ["timestamp"]},
        "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
        "cursor_field": ["timestamp"], "primary_key": [["uid"]]}]}


def run_connector(emu: Emulator, project: str, expected: set, window_days: int, start_date, label: str) -> dict:
    """One `read` of `comments` for `project`; wall time, records, API calls, and whether each comment came once."""
    with tempfile.TemporaryDirectory(prefix="cm-history-bench-") as wd:
        config = {"api_endpoint": emu.url, "api_token": emu.token, "project": project, "comments_window_days": window_days}
        if start_date:
            config["start_date"] = start_date
        paths = {name: os.path.join(wd, name + ".json") for name in ("config", "catalog")}
        for name, body in (("config", config), ("catalog", catalog())):
            with open(paths[name], "w") as f:
                json.dump(body, f)
        out_path = os.path.join(wd, "out.jsonl")
        calls_before = sum(1 for _, path, _ in emu.request_log if "/comments" in path)
        log("run %s" % label)
        requests_before = emu.stats()["requests"]
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        first_call = None
        with open(out_path, "wb") as out, open(os.path.join(wd, "err.log"), "wb") as err:
            proc = subprocess.Popen([CONNECTOR, "read", "--config", paths["config"], "--catalog", paths["catalog"]],
                                    stdout=out, stderr=err)
            cpu_at_first_call = None
            while proc.poll() is None:  # the connector's start-up (imports, manifest) ends with its first API call
                if first_call is None and emu.stats()["requests"] > requests_before:
                    first_call = time.perf_counter()
                    cpu_at_first_call = process_cpu_s(proc.pid)
                time.sleep(0.01)
            code = proc.returncode
        ended = time.perf_counter()
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the connector, reaped by poll()
        cpu = sum(getattr(children_after, f) - getattr(children_before, f) for f in ("ru_utime", "ru_stime"))
        wall = ended - started
        reading = ended - (first_call or started)
        calls = sum(1 for _, path, _ in emu.request_log if "/comments" in path) - calls_before
        uids = []
        with open(out_path, "rb") as f:
            for line in f:
                if b'"RECORD"' in line:
                    message = orjson.loads(line)
                    if message.get("type") == "RECORD":
                        uids.append(message["record"]["data"]["uid"])
        with open(os.path.join(wd, "err.log"), "rb") as f:
            err_tail = f.read()[-600:].decode("utf-8", "replace")
    result = {
        "label": label, "project": project, "window_days": window_days, "start_date": start_date,
        "returncode": code, "wall_s": round(wall, 3), "records": len(uids), "unique_records": len(set(uids)),
        "expected_records": len(expected), "export_calls": calls,
        "records_per_s": round(len(uids) / wall, 1) if wall else None,
        "startup_s": round(wall - reading, 3), "reading_s": round(reading, 3),
        "records_per_s_reading": round(len(uids) / reading, 1) if reading else None,
        # The connector's CPU per second while it reads (from its first API call): near 1.0, its one
        # interpreter is the limit, not how its reads are scheduled.
        "connector_cpu_cores": round((cpu - cpu_at_first_call) / reading, 2) if reading and cpu_at_first_call is not None else None,
    }
    result["complete_and_once"] = code == 0 and len(uids) == len(set(uids)) and set(uids) == expected
    if not result["complete_and_once"]:
        result["error_tail"] = err_tail
    log("  -> %d records (%d unique, %d expected) in %.2fs (%.2fs from the first API call), %d export calls, "
        "connector at %s of a core" % (len(uids), len(set(uids)), len(expected), wall, reading, calls, result["connector_cpu_cores"]))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--comments", type=int, default=100_000, help="comments of the large source, windows goal (default 100000)")
    ap.add_argument("--source-comments", type=int, default=25_000, help="comments of each source, sources goal (default 25000)")
    ap.add_argument("--span-days", type=float, default=365.0, help="days the comments of a source span (default 365)")
    ap.add_argument("--window-days", type=int, default=30,
                    help="comments_window_days of the windowed runs (default 30: about 12 windows over the year the comments span)")
    ap.add_argument("--latency-ms", type=float, default=100.0, help="latency added to every API call (default 100)")
    ap.add_argument("--skip-from-1970", action="store_true", help="leave out the windowed run without start_date")
    ap.add_argument("--only", choices=["sources", "windows"], default=None, help="measure one goal only")
    ap.add_argument("--output", required=True, help="JSON file for the figures")
    args = ap.parse_args(argv)

    window_days = args.window_days

    results = {"large_source_comments": args.comments, "comments_per_source": args.source_comments, "span_days": args.span_days, "latency_ms": args.latency_ms,
               "window_days": window_days, "runs": {}}
    with Emulator(seed=7, comments=10, latency_ms=args.latency_ms) as emu:
        keep_thread_properties()
        want_sources, want_windows = args.only in (None, "sources"), args.only in (None, "windows")
        if want_windows:
            add_source(emu, "bench-one", "large", args.comments, args.span_days)
        if want_sources:
            add_source(emu, "bench-single", "source", args.source_comments, args.span_days)
            for i in range(4):
                add_source(emu, "bench-four", "source-%d" % i, args.source_comments, args.span_days)
        log("building the comments once")
        runs = results["runs"]
        if want_sources:
            single, four = (served_uids(emu, p, BASE_MS) for p in ("bench-single", "bench-four"))
            runs["one_source_one_window"] = run_connector(emu, "bench-single", single, ONE_WINDOW_DAYS, START_DATE,
                                                          "sources goal: 1 source, 1 window")
            runs["four_sources_one_window"] = run_connector(emu, "bench-four", four, ONE_WINDOW_DAYS, START_DATE,
                                                            "sources goal: 4 sources, 1 window each")
        if want_windows:
            one = served_uids(emu, "bench-one", BASE_MS)
            runs["large_source_one_window"] = run_connector(emu, "bench-one", one, ONE_WINDOW_DAYS, START_DATE,
                                                            "windows goal: 1 large source, 1 window")
            runs["large_source_windows"] = run_connector(emu, "bench-one", one, window_days, START_DATE,
                                                         "windows goal: 1 large source, %d-day windows" % window_days)
            if not args.skip_from_1970:
                runs["large_source_windows_from_1970"] = run_connector(
                    emu, "bench-one", served_uids(emu, "bench-one", None), window_days, None,
                    "figure: 1 large source, %d-day windows, no start_date" % window_days)

    # The goals compare reading speeds: records per second from the connector's first API call to its exit
    # (its start-up, a few seconds of imports whatever it reads, is left out; wall-clock ratios are kept too).
    def ratio(fast, slow, key="records_per_s_reading"):
        if fast not in runs or slow not in runs or not runs[slow][key]:
            return None
        return round((runs[fast][key] or 0.0) / runs[slow][key], 2)

    goals = {
        "sources": ("4 sources >= %sx one (records/s, one window each)" % SOURCES_GOAL, SOURCES_GOAL,
                    "four_sources_one_window", "one_source_one_window"),
        "windows": ("one source in windows >= %sx one window (records/s)" % WINDOWS_GOAL, WINDOWS_GOAL,
                    "large_source_windows", "large_source_one_window"),
    }
    results["goals"], results["wall_clock_ratios"] = {}, {}
    for name, (text, target, fast, slow) in goals.items():
        measured = ratio(fast, slow)
        if measured is not None:
            results["goals"][name] = {"goal": text, "ratio": measured, "pass": measured >= target,
                                      "connector_cpu_cores": runs[fast]["connector_cpu_cores"]}
            results["wall_clock_ratios"][name] = ratio(fast, slow, "records_per_s")
    results["goals"]["exact"] = {"goal": "every run delivers each comment exactly once",
                                 "pass": all(run["complete_and_once"] for run in runs.values())}
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
    for name, goal in results["goals"].items():
        figure = " (%.2fx; the connector at %s of a core)" % (goal["ratio"], goal["connector_cpu_cores"]) if "ratio" in goal else ""
        print("%s %s: %s%s" % ("PASS" if goal["pass"] else "FAIL", name, goal["goal"], figure))
    print("figures: %s" % args.output)
    return 0 if all(goal["pass"] for goal in results["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
