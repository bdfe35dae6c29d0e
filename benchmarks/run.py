#!/usr/bin/env python
"""Benchmarks for source-commsmining against the local emulator (see benchmarks/README.md).

Every measured reader (the connector, the reference reader) and the emulator run in separate
processes; this script only starts them, counts RECORD lines from the reader's stdout pipe, and
takes wall time and peak RSS (os.wait4 rusage of that very child).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import orjson
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
EMULATOR = os.path.join(BIN, "commsmining-emulator")
CONNECTOR = os.path.join(BIN, "source-commsmining")
REFERENCE = os.path.join(HERE, "reference_reader.py")
STRIPPED = os.path.join(HERE, "stripped_connector.py")
PROJECT, DATASET = "acme", "collections"

# The readers authenticate with a token shaped like a real one (long, mixed case) rather than the
# emulator's all-lower-case default: the connector scans every output line for the token's
# probes (errors.mask_line), and a token with capitals costs it three scans of a record line (as is,
# lower- and upper-cased), not two.
BENCH_TOKEN = "Kq7ZtR2mXw9LbV4nHc8JpE3sYd6FgU1aTk5WoN0iMe"

# Goals: steady-state records/s of the connector / the reference reader with no added latency,
# and 4 CM streams read at 100 ms per call / one stream.
NO_LATENCY_GOAL = 0.85
MULTI_STREAM_GOAL = 3.5

RECORD_PATTERNS = (b'"type":"RECORD"', b'"type": "RECORD"')
STATE_PATTERNS = (b'"type":"STATE"', b'"type": "STATE"')


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- emulator process
class EmulatorProcess:
    """`commsmining-emulator` as a subprocess; driven over HTTP (/_emulator/...)."""

    def __init__(self, comments, latency_ms=0.0, seed=7):
        self.comments, self.latency_ms, self.seed = comments, latency_ms, seed
        self.proc = None
        self.url = None
        self.token = BENCH_TOKEN

    def __enter__(self):
        self._dir = tempfile.mkdtemp(prefix="cm-bench-")
        ready = os.path.join(self._dir, "ready")
        self.proc = subprocess.Popen(
            [EMULATOR, "--port", "0", "--seed", str(self.seed), "--comments", str(self.comments),
             "--latency-ms", str(self.latency_ms), "--ready-file", ready],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self._dir, "emulator.log"), "wb"))
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("emulator did not start (see %s)" % self._dir)
            time.sleep(0.05)
        with open(ready) as f:
            self.url = f.read().strip()
        self.admin("POST", "tokens", {"token": self.token})
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin(self, method, path, body=None):
        r = requests.request(method, self.url + "/_emulator/" + path, data=orjson.dumps(body or {}), timeout=30)
        r.raise_for_status()
        return r.json()

    def set_latency(self, ms):
        self.admin("POST", "latency", {"ms": ms})

    def create_stream(self, name, model=True, at="start"):
        return self.admin("POST", "streams", {"project": PROJECT, "dataset": DATASET, "name": name,
                                              "model": model, "at": at})

    def stream_state(self, name):
        return self.admin("GET", "streams/%s/%s/%s" % (PROJECT, DATASET, name))


# ---------------------------------------------------------------------------- running a reader
def catalog():
    return {"streams": [{
        "stream": {"name": "stream_results", "json_schema": {}, "supported_sync_modes": ["incremental"],
                   "source_defined_cursor": True, "default_cursor_field": ["created_at"]},
        "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
        "cursor_field": ["created_at"], "primary_key": [["project"], ["dataset"], ["stream"], ["uid"]]}]}


def connector_cmd(emu, streams, workdir, max_results=32, parallel=4):
    """The connector's command line; CONNECTOR is the console script, see --connector."""
    config = {"api_endpoint": emu.url, "api_token": emu.token,
              "streams": [{"project": PROJECT, "dataset": DATASET, "stream": s} for s in streams],
              "max_results": max_results, "parallel_streams": parallel}
    cfg, cat = os.path.join(workdir, "config.json"), os.path.join(workdir, "catalog.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    with open(cat, "w") as f:
        json.dump(catalog(), f)
    return [CONNECTOR, "read", "--config", cfg, "--catalog", cat]


def reference_cmd(emu, streams, max_results=32):
    cmd = [sys.executable, REFERENCE, "--url", emu.url, "--token", emu.token, "--max-results", str(max_results)]
    for s in streams:
        cmd += ["--stream", "%s/%s/%s" % (PROJECT, DATASET, s)]
    return cmd


def stripped_cmd(emu, streams, workdir, layers):
    """The connector with `layers` taken out (stripped_connector.py), on the console script's own Python."""
    return [connector_python(), STRIPPED, layers] + connector_cmd(emu, streams, workdir)[1:]


def connector_python():
    """The interpreter of the console script CONNECTOR (its shebang), which the stripped variants run on too."""
    with open(CONNECTOR, "rb") as f:
        first = f.readline()
    return first[2:].strip().decode() if first.startswith(b"#!") else sys.executable


def reader_cmd(kind, emu, streams, workdir, parallel=4):
    """`reference`, `connector` or `without <layers>` (stripped_connector.py)."""
    if kind == "connector":
        return connector_cmd(emu, streams, workdir, parallel=parallel)
    if kind.startswith("without "):
        return stripped_cmd(emu, streams, workdir, kind.split(" ", 1)[1])
    return reference_cmd(emu, streams)


def run_reader(cmd, expect=None, label="", env=None):
    """Run cmd, count RECORD/STATE lines on its stdout; wall time start->exit; peak RSS of that child."""
    stderr_f = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_f, bufsize=0,
                            env=dict(os.environ, **env) if env else None)
    counts = {"records": 0, "states": 0, "first_record_t": None, "bytes": 0}

    def pump():
        tail = b""
        fd = proc.stdout.fileno()
        last_report = time.perf_counter()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            buf = tail + chunk
            recs = sum(buf.count(p) for p in RECORD_PATTERNS) - sum(tail.count(p) for p in RECORD_PATTERNS)
            counts["records"] += recs
            counts["states"] += sum(buf.count(p) for p in STATE_PATTERNS) - sum(tail.count(p) for p in STATE_PATTERNS)
            counts["bytes"] += len(chunk)
            if recs and counts["first_record_t"] is None:
                counts["first_record_t"] = time.perf_counter()
            tail = buf[-24:]
            now = time.perf_counter()
            if expect and now - last_report > 15:
                last_report = now
                log("  %s: %d/%d records (%.0fs)" % (label, counts["records"], expect, now - t0))

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    _, status, rusage = os.wait4(proc.pid, 0)
    t1 = time.perf_counter()
    proc.returncode = os.waitstatus_to_exitcode(status)
    th.join()
    stderr_f.seek(0)
    err = stderr_f.read()[-2000:].decode("utf-8", "replace")
    wall = t1 - t0
    n = counts["records"]
    out = {
        "records": n, "states": counts["states"], "wall_s": round(wall, 3),
        "records_per_s": round(n / wall, 1) if wall else None,
        "startup_s": round(counts["first_record_t"] - t0, 3) if counts["first_record_t"] else None,
        "records_per_s_after_first_record": (round(n / (t1 - counts["first_record_t"]), 1)
                                             if counts["first_record_t"] and t1 > counts["first_record_t"] else None),
        "peak_rss_mb": round(rusage.ru_maxrss / 1024.0, 1), "cpu_user_s": round(rusage.ru_utime, 2),
        "cpu_sys_s": round(rusage.ru_stime, 2), "returncode": proc.returncode, "stdout_mb": round(counts["bytes"] / 1e6, 1),
    }
    if proc.returncode != 0 or (expect is not None and n != expect):
        out["error"] = "returncode=%s records=%s expected=%s stderr tail: %s" % (proc.returncode, n, expect, err[-800:])
        log("  %s: PROBLEM %s" % (label, out["error"]))
    return out


def measure(kind, comments, latency_ms, streams=("triage",), extra_streams=0, parallel=4, env=None):
    """Fresh emulator subprocess, optional extra streams (model, at start), one reader run."""
    with EmulatorProcess(comments, latency_ms) as emu, tempfile.TemporaryDirectory(prefix="cm-bench-run-") as wd:
        streams = list(streams)
        for i in range(extra_streams):
            name = "bench-s%d" % (i + 2)
            emu.create_stream(name, model=True, at="start")
            streams.append(name)
        expect = comments * len(streams)
        label = "%s n=%d lat=%gms streams=%d" % (kind, comments, latency_ms, len(streams))
        log("run %s" % label)
        cmd = reader_cmd(kind, emu, streams, wd, parallel=parallel)
        res = run_reader(cmd, expect=expect, label=label, env=env)
        res.update({"reader": kind, "comments": comments, "latency_ms": latency_ms, "streams": len(streams),
                    "expected_records": expect})
        if kind != "reference":
            # every stream must have been advanced to its end
            res["streams_fully_advanced"] = all(
                emu.stream_state(s).get("position") == emu.stream_state(s).get("max_position") for s in streams)
        log("  -> %d records in %.2fs = %.0f rec/s, peak RSS %.1f MB" % (res["records"], res["wall_s"],
                                                                      res["records_per_s"] or 0, res["peak_rss_mb"]))
        return res


def cpu_ms_per_1k_records(run):
    """A run's CPU (user + sys, start-up included) per 1,000 records, in ms."""
    return round((run["cpu_user_s"] + run["cpu_sys_s"]) / max(run["records"], 1) * 1e6, 1)


def median_of(runs, key):
    """The median of `key` over `runs` (a missing value counts as 0)."""
    values = sorted(run[key] or 0 for run in runs)
    return values[len(values) // 2]


def compare(comments, latency_ms, repeats):
    """Reference and connector runs, alternately, `repeats` times each; the medians are compared.

    On a shared 2-core machine one run of either reader can be 15% off; alternating and taking
    medians keeps a slow moment from deciding the ratio. Every run is kept in the result.
    """
    runs = {"reference": [], "connector": []}
    for _ in range(repeats):
        for kind in ("reference", "connector"):
            runs[kind].append(measure(kind, comments, latency_ms))

    def median(kind):
        ordered = sorted(runs[kind], key=lambda run: run["records_per_s"] or 0)
        return ordered[len(ordered) // 2]

    ref, con = median("reference"), median("connector")
    for run in runs["reference"] + runs["connector"]:
        run["cpu_ms_per_1k_records"] = cpu_ms_per_1k_records(run)
    return {
        "comments": comments, "latency_ms": latency_ms, "repeats": repeats, "reference": ref, "connector": con,
        "ratio": ratio(con["records_per_s"], ref["records_per_s"]),
        "ratio_after_first_record": ratio(con["records_per_s_after_first_record"], ref["records_per_s_after_first_record"]),
        "records_per_s_each_run": {kind: [run["records_per_s"] for run in done] for kind, done in runs.items()},
        "pair_ratios": [ratio(c["records_per_s"], r["records_per_s"]) for r, c in zip(runs["reference"], runs["connector"])],
        # Each pair's steady-state ratio: the spread says how much one run on this machine can be trusted.
        "pair_ratios_after_first_record": [
            ratio(c["records_per_s_after_first_record"], r["records_per_s_after_first_record"])
            for r, c in zip(runs["reference"], runs["connector"])
        ],
        # CPU per record of each reader (whole process, start-up included): less sensitive to load than records/s.
        "cpu_ms_per_1k_records": {kind: median_of(done, "cpu_ms_per_1k_records") for kind, done in runs.items()},
    }


def gc_tuning(comments, repeats):
    """The connector with and without its collector tuning (run._tune_gc), alternately, no latency.

    The one speed measure the connector keeps: it is kept only while it buys >= 10% of steady-state
    throughput (benchmarks/README.md). CPU per 1,000 records is reported too: it is less sensitive
    than records/s to what else the machine runs.
    """
    runs = {"tuned": [], "untuned": []}
    for _ in range(repeats):
        for kind, value in (("untuned", "0"), ("tuned", "1")):
            run = measure("connector", comments, 0, env={"SOURCE_COMMSMINING_GC_TUNING": value})
            run["cpu_ms_per_1k_records"] = cpu_ms_per_1k_records(run)
            runs[kind].append(run)

    return {
        "comments": comments, "repeats": repeats, "runs": runs,
        "gain_after_first_record": ratio(median_of(runs["tuned"], "records_per_s_after_first_record"),
                                         median_of(runs["untuned"], "records_per_s_after_first_record")),
        "cpu_ms_per_1k_records": {kind: median_of(runs[kind], "cpu_ms_per_1k_records") for kind in runs},
        "peak_rss_mb": {kind: median_of(runs[kind], "peak_rss_mb") for kind in runs},
        "goal": "kept only while the no-latency goal needs it (its ratio_after_first_record / gain < %s)" % NO_LATENCY_GOAL,
    }


# The connector with layers it must keep taken out (stripped_connector.py): what each costs with no latency.
LAYER_VARIANTS = ("without http,output,mask", "without http,output,mask,columns")


def layers(comments, repeats):
    """Reference, connector and the stripped variants, alternately, no latency; steady-state ratios to the reference.

    Not a goal: it says how much of the no-latency gap the layers the connector must keep account
    for (the CDK's requester and HTTP client, its message serialisation, the token mask, the
    promoted columns), i.e. what the no-latency ratio could be at best without them.
    """
    kinds = ("reference", "connector") + LAYER_VARIANTS
    runs = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            run = measure(kind, comments, 0)
            run["cpu_ms_per_1k_records"] = cpu_ms_per_1k_records(run)
            runs[kind].append(run)

    reference = median_of(runs["reference"], "records_per_s_after_first_record")
    return {
        "comments": comments, "repeats": repeats, "runs": runs,
        "records_per_s_after_first_record": {kind: median_of(runs[kind], "records_per_s_after_first_record") for kind in kinds},
        "ratio_after_first_record": {kind: ratio(median_of(runs[kind], "records_per_s_after_first_record"), reference) for kind in kinds[1:]},
        "pair_ratios_after_first_record": {
            kind: [ratio(run["records_per_s_after_first_record"], ref["records_per_s_after_first_record"])
                   for ref, run in zip(runs["reference"], runs[kind])] for kind in kinds[1:]},
        "cpu_ms_per_1k_records": {kind: median_of(runs[kind], "cpu_ms_per_1k_records") for kind in kinds},
        "note": "not a goal: the no-latency ratio the connector could reach at best without the layers named",
    }


INSTRUCTION_SIZES = (300, 1300)


def instructions(kinds=("reference", "connector") + LAYER_VARIANTS, sizes=INSTRUCTION_SIZES):
    """CPU instructions per record of each reader in steady state: (count at the larger size - at the smaller) / difference.

    Counted by valgrind (`--tool=cachegrind --cache-sim=no`), in the reader's process only (not the
    emulator's), so unlike wall time it does not depend on what else the machine runs: the same
    code gives the same count to a few percent (the connector's threads make it move by up to ~5%).
    Start-up cancels out in the difference. About 25 s per connector run under valgrind (start-up
    included), so the section takes a few minutes.
    """
    valgrind = shutil.which("valgrind")
    if not valgrind:
        return {"skipped": "valgrind is not installed (Debian: apt-get install valgrind)"}
    small, big = sizes
    counts = {}
    for kind in kinds:
        counts[kind] = {}
        for n in sizes:
            with EmulatorProcess(n, 0) as emu, tempfile.TemporaryDirectory(prefix="cm-bench-run-") as wd:
                cmd = reader_cmd(kind, emu, ["triage"], wd)
                if kind == "connector":
                    cmd = [connector_python()] + cmd  # valgrind runs the interpreter, not the script's shebang
                log("instructions %s n=%d" % (kind, n))
                done = subprocess.run([valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
                                      + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
                found = re.search(rb"I\s+refs:\s+([\d,]+)", done.stderr)
                records = sum(done.stdout.count(p) for p in RECORD_PATTERNS)
                if done.returncode != 0 or not found or records != n:
                    return {"error": "%s n=%d: exit %s, %d records, valgrind said %r"
                                     % (kind, n, done.returncode, records, done.stderr[-300:])}
                counts[kind][str(n)] = int(found.group(1).replace(b",", b""))
    return {
        "sizes": list(sizes), "counts": counts,
        "per_record_k": {kind: round((c[str(big)] - c[str(small)]) / (big - small) / 1000) for kind, c in counts.items()},
        "note": "thousands of instructions per record, steady state, reader process only",
    }


# ---------------------------------------------------------------------------- start-up floor
CDK_FRAMEWORK = "airbyte_cdk.sources.declarative.concurrent_declarative_source"
REFERENCE_MODULES = "argparse, orjson, requests"  # what benchmarks/reference_reader.py imports beyond sys and time


def startup_floor(repeats=5):
    """Seconds the connector's Python spends importing, before it can do any work.

    `connector_import_s` is `import source_commsmining.run` (the CDK's declarative framework and the
    connector's own modules); `cdk_framework_import_s` is the plain CDK
    framework, as any declarative connector imports it; `reference_import_s` is what the reference
    reader imports (already part of its wall time). Timed inside the process (interpreter start and
    exit are the reference's too), median of `repeats` runs.
    """
    connector_python = os.path.join(os.path.dirname(CONNECTOR), "python")

    def median_import(python, modules):
        code = "import time; t = time.perf_counter(); import %s; print(time.perf_counter() - t)" % modules
        runs = sorted(float(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout)
                      for _ in range(repeats))
        return round(runs[len(runs) // 2], 3)

    return {"connector_import_s": median_import(connector_python, "source_commsmining.run"),
            "cdk_framework_import_s": median_import(connector_python, CDK_FRAMEWORK), "cdk_framework_module": CDK_FRAMEWORK,
            "reference_import_s": median_import(sys.executable, REFERENCE_MODULES)}


def ceiling_ratio(reference_wall_s, floor):
    """The ratio of a reader that did the reference's whole run plus the imports only the connector needs."""
    extra = floor["connector_import_s"] - floor["reference_import_s"]
    return ratio(reference_wall_s, reference_wall_s + extra)


# ---------------------------------------------------------------------------- emulator capacity
def _capacity_worker(args):
    url, token, stream, seconds, advance = args
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + token
    base = "%s/api/v1/datasets/%s/%s/streams/%s" % (url, PROJECT, DATASET, stream)
    n_req = n_res = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        r = s.get(base + "/results", params={"max_results": 32}, timeout=30)
        body = orjson.loads(r.content)
        n_req += 1
        n_res += len(body["results"])
        if advance and body.get("continuation"):
            s.post(base + "/advance", data=orjson.dumps({"sequence_id": body["continuation"]}), timeout=30)
            n_req += 1
            if not body.get("more_results"):
                break
    return n_req, n_res


def emulator_capacity(seconds, comments):
    out = {}
    with EmulatorProcess(comments, 0) as emu:
        for i in range(4):
            emu.create_stream("cap-%d" % i, model=True, at="start")
        ctx = multiprocessing.get_context("spawn")
        for clients in (1, 4):
            for advance in (False, True):
                key = "%d_client%s_%s" % (clients, "s" if clients > 1 else "", "get_advance" if advance else "get_only")
                streams = ["cap-%d" % i if advance else "triage" for i in range(clients)]
                if advance:  # fresh streams so advancing never runs off the end
                    streams = []
                    for i in range(clients):
                        name = "cap-%s-%d" % (key, i)
                        emu.create_stream(name, model=True, at="start")
                        streams.append(name)
                with ctx.Pool(clients) as pool:
                    t0 = time.perf_counter()
                    res = pool.map(_capacity_worker, [(emu.url, emu.token, s, seconds, advance) for s in streams])
                    dt = time.perf_counter() - t0
                req = sum(r[0] for r in res)
                results = sum(r[1] for r in res)
                out[key] = {"client_processes": clients, "advance": advance, "seconds": round(dt, 2), "requests": req,
                            "results": results, "requests_per_s": round(req / dt, 1),
                            "results_per_s": round(results / dt, 1)}
                log("capacity %s: %.0f results/s (%.0f req/s)" % (key, results / dt, req / dt))
    return out


# ---------------------------------------------------------------------------- main
def machine_info():
    try:
        from importlib.metadata import version
        cdk = version("airbyte-cdk")
    except Exception:  # pragma: no cover
        cdk = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except Exception:  # pragma: no cover
        commit = None
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "airbyte_cdk": cdk, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit}


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def main(argv=None):
    ap = argparse.ArgumentParser(description="source-commsmining benchmarks")
    ap.add_argument("--output", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--quick", action="store_true", help="small sizes, skips the 1,000,000-comment RSS run")
    ap.add_argument("--throughput-comments", type=int, default=None, help="no-latency run size (default 100000)")
    ap.add_argument("--latency-comments", type=int, default=None, help="latency run size (default 3000)")
    ap.add_argument("--latency-ms", type=float, default=100.0,
                    help="latency added to every API call in the latency and multi-stream sections (default 100)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="reference/connector pairs per throughput section, run alternately; medians are compared (3)")
    ap.add_argument("--sizes", default=None, help="comma-separated RSS sizes (default 10000,100000,1000000)")
    ap.add_argument("--multi-comments", type=int, default=None, help="comments per stream in the multi-stream run (2000)")
    ap.add_argument("--capacity-seconds", type=float, default=None)
    ap.add_argument("--connector", default=None,
                    help="the source-commsmining console script to measure (make bench: one installed like the "
                         "Docker image, without the test and demo extras)")
    ap.add_argument("--only", default="throughput,latency,rss,multi,gc,capacity",
                    help="comma-separated subset of sections to run; `layers` (what the layers the connector must "
                         "keep cost, see stripped_connector.py) and `instructions` (the same readers' instructions "
                         "per record, valgrind) run only when named")
    args = ap.parse_args(argv)
    global CONNECTOR
    CONNECTOR = os.path.abspath(args.connector or CONNECTOR)
    q = args.quick
    tp_n = args.throughput_comments or (10_000 if q else 100_000)
    lat_n = args.latency_comments or (600 if q else 3_000)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([2_000, 10_000] if q else [10_000, 100_000, 1_000_000])
    multi_n = args.multi_comments or (500 if q else 2_000)
    cap_s = args.capacity_seconds or (3.0 if q else 10.0)
    repeats = args.repeats or (1 if q else 3)
    only = set(args.only.split(","))

    results = {"machine": dict(machine_info(), connector=os.path.relpath(CONNECTOR, ROOT)), "quick": q,
               "notes": ["Emulator and every reader run as separate subprocesses; wall time is process start to exit "
                         "(includes interpreter + CDK start-up: see startup_s and records_per_s_after_first_record)."]}
    started = time.time()

    def save():
        results["elapsed_s"] = round(time.time() - started, 1)
        with open(args.output, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")

    if "capacity" in only:
        log("== emulator capacity")
        results["emulator_capacity"] = emulator_capacity(cap_s, max(tp_n, 100_000))
        save()

    if "throughput" in only:
        log("== throughput, %d comments, no latency, %d pairs" % (tp_n, repeats))
        # The goals are on steady-state throughput (after the first record); start-up is reported, not a goal.
        results["throughput_no_latency"] = dict(compare(tp_n, 0, repeats), goal="ratio_after_first_record >= %s" % NO_LATENCY_GOAL)
        results["throughput_no_latency"]["goal_met"] = bool(
            (results["throughput_no_latency"]["ratio_after_first_record"] or 0) >= NO_LATENCY_GOAL)
        save()

    if "latency" in only:
        log("== throughput, %d comments, %g ms per call, %d pairs" % (lat_n, args.latency_ms, repeats))
        results["throughput_latency"] = dict(compare(lat_n, args.latency_ms, repeats), goal="ratio_after_first_record >= 0.98")
        results["throughput_latency"]["goal_met"] = bool(
            (results["throughput_latency"]["ratio_after_first_record"] or 0) >= 0.98)
        floor = startup_floor(repeats=1 if q else 5)
        floor["ceiling_ratio"] = ceiling_ratio(results["throughput_latency"]["reference"]["wall_s"], floor)
        floor["note"] = ("ceiling_ratio: reference wall / (reference wall + connector_import_s - reference_import_s), "
                         "what this connector would reach at this size if everything but its extra imports cost "
                         "what the reference's run costs")
        results["throughput_latency"]["startup_floor"] = floor
        log("  imports %.2fs -> ceiling ratio %s" % (floor["connector_import_s"], floor["ceiling_ratio"]))
        save()

    if "multi" in only:
        log("== multi-stream, %d comments per stream, %g ms per call" % (multi_n, args.latency_ms))
        runs = {}
        for k in (1, 2, 4):
            runs[str(k)] = measure("connector", multi_n, args.latency_ms, extra_streams=k - 1, parallel=4)
        base = runs["1"]["records_per_s"]
        scaling = {k: ratio(v["records_per_s"], base) for k, v in runs.items()}
        results["multi_stream"] = {"comments_per_stream": multi_n, "latency_ms": args.latency_ms, "parallel_streams": 4,
                                   "runs": runs, "speedup_vs_1": scaling, "goal": "4 streams >= %sx one" % MULTI_STREAM_GOAL,
                                   "goal_met": bool(scaling.get("4") and scaling["4"] >= MULTI_STREAM_GOAL)}
        save()

    if "gc" in only:
        log("== collector tuning on/off, %d comments, no latency, %d pairs" % (tp_n, repeats))
        results["gc_tuning"] = gc_tuning(tp_n, repeats)
        # The tuning touches no CDK internals; it stays while the no-latency goal would be missed without it.
        gain = results["gc_tuning"]["gain_after_first_record"]
        tuned = (results.get("throughput_no_latency") or {}).get("ratio_after_first_record")
        untuned = round(tuned / gain, 3) if tuned and gain else None
        results["gc_tuning"]["no_latency_ratio_without_it"] = untuned
        results["gc_tuning"]["goal_met"] = bool(untuned is not None and untuned < NO_LATENCY_GOAL)
        save()

    if "layers" in only:
        log("== layers, %d comments, no latency, %d rounds" % (tp_n, repeats))
        results["layers_no_latency"] = layers(tp_n, repeats)
        save()

    if "instructions" in only:
        log("== instructions per record (valgrind), %s comments" % " and ".join(map(str, INSTRUCTION_SIZES)))
        results["instructions"] = instructions()
        save()

    if "rss" in only:
        log("== peak RSS at sizes %s" % sizes)
        runs = {}
        results["peak_rss"] = {"goal": "< 150 MB and flat", "sizes_run": [], "runs": runs}
        for n in sizes:
            runs[str(n)] = measure("connector", n, 0)
            results["peak_rss"]["sizes_run"].append(n)
            save()
        rss = [v["peak_rss_mb"] for v in runs.values()]
        results["peak_rss"].update({
            "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in runs.items()},
            "max_mb": max(rss), "spread_mb": round(max(rss) - min(rss), 1),
            "goal_met": max(rss) < 150 and (max(rss) - min(rss)) < 15,
            "note": "flat = spread between smallest and largest size < 15 MB"})
        if 1_000_000 not in sizes:
            results["peak_rss"]["note"] += "; the 1,000,000-comment size was NOT run in this invocation"
        save()

    save()
    print_summary(results)
    return 0


def print_summary(r):
    rows = []
    for key in ("throughput_no_latency", "throughput_latency"):
        if key in r:
            x = r[key]
            title = "%g ms/call" % x["latency_ms"] if x["latency_ms"] else "no latency"
            rows.append(("throughput %s, %d comments" % (title, x["comments"]),
                         "connector %.0f rec/s vs reference %.0f rec/s (medians of %d), ratio %s, %s after the "
                         "first record (goal %s) %s; pairs %s" % (
                             x["connector"]["records_per_s"], x["reference"]["records_per_s"], x["repeats"], x["ratio"],
                             x["ratio_after_first_record"], x["goal"], "OK" if x["goal_met"] else "MISSED",
                             x.get("pair_ratios_after_first_record", x["pair_ratios"]))))
            if "cpu_ms_per_1k_records" in x:
                rows.append(("  CPU per 1,000 records", "connector %(connector)s ms, reference %(reference)s ms (medians, "
                             "start-up included)" % x["cpu_ms_per_1k_records"]))
            rows.append(("  start-up (not a goal)", "first RECORD after %.2f s (connector) vs %.2f s (reference), "
                         "medians' runs" % (x["connector"]["startup_s"] or 0, x["reference"]["startup_s"] or 0)))
            if "startup_floor" in x:
                f = x["startup_floor"]
                rows.append(("  start-up floor", "imports take %.2f s (the plain CDK framework alone %.2f s): ceiling "
                             "ratio %s at this size" % (f["connector_import_s"], f["cdk_framework_import_s"],
                                                        f["ceiling_ratio"])))
    if "peak_rss" in r and "peak_rss_mb" in r["peak_rss"]:
        x = r["peak_rss"]
        rows.append(("peak RSS", ", ".join("%s: %.1f MB" % (k, v) for k, v in x["peak_rss_mb"].items())
                     + " (goal %s) %s" % (x["goal"], "OK" if x["goal_met"] else "MISSED")))
    if "multi_stream" in r:
        x = r["multi_stream"]
        rows.append(("multi-stream @%gms" % x["latency_ms"],
                     ", ".join("%s: %.0f rec/s (x%s)" % (k, v["records_per_s"], x["speedup_vs_1"][k])
                               for k, v in x["runs"].items()) + " (goal %s) %s" % (x["goal"], "OK" if x["goal_met"] else "MISSED")))
    if "gc_tuning" in r:
        x = r["gc_tuning"]
        rows.append(("collector tuning", "steady-state x%s with it, no-latency ratio %s without it (%s) %s; CPU per 1k records %s; RSS %s" % (
            x["gain_after_first_record"], x.get("no_latency_ratio_without_it"), x["goal"],
            "NEEDED, kept" if x["goal_met"] else "NOT NEEDED: remove it", x["cpu_ms_per_1k_records"], x["peak_rss_mb"])))
    if "layers_no_latency" in r:
        x = r["layers_no_latency"]
        rows.append(("layers (not a goal)", "steady-state ratio to the reference, no latency: " + ", ".join(
            "%s %s" % (kind, value) for kind, value in x["ratio_after_first_record"].items())))
    if "per_record_k" in r.get("instructions", {}):
        rows.append(("instructions (not a goal)", "per record, valgrind: " + ", ".join(
            "%s %sk" % (kind, value) for kind, value in r["instructions"]["per_record_k"].items())))
    if "emulator_capacity" in r:
        rows.append(("emulator capacity", ", ".join("%s: %.0f res/s" % (k, v["results_per_s"])
                                                   for k, v in r["emulator_capacity"].items())))
    w = max(len(a) for a, _ in rows) if rows else 0
    print()
    for a, b in rows:
        print("%s  %s" % (a.ljust(w), b))


if __name__ == "__main__":
    sys.exit(main())
