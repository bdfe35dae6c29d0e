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

# Goals. CPU is gated on instruction counts (valgrind, steady state), which do not depend on what
# else the machine runs; wall time is gated only where it is latency-bound (benchmarks/README.md).
CPU_GUARD = 1.9  # connector instructions per record / the reference reader's, at most
LATENCY_GOAL = 0.98  # steady-state records/s at 100 ms per call, connector / reference, at least
MULTI_STREAM_COUNTS = (1, 4, 8, 16)
MULTI_STREAM_GOAL = 14.0  # 16 streams read side by side: records/s at least this many times one stream's
RSS_GOAL_MB = 150
RSS_FLAT_MB = 15  # "flat": the largest size's peak RSS at most this far from the smallest's

RECORD_PATTERNS = (b'"type":"RECORD"', b'"type": "RECORD"')


def stream_record_patterns(stream):
    """How a RECORD of `stream` is told from the flat tables' rows (RECORDs too): its message names the stream."""
    return (b'"stream":"%s"' % stream.encode(), b'"stream": "%s"' % stream.encode())


STATE_PATTERNS = (b'"type":"STATE"', b'"type": "STATE"')


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def process_cpu_s(pid):
    """CPU seconds (user + sys) process `pid` has used so far (/proc; None elsewhere)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


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

    def cpu_s(self):
        """CPU seconds (user + sys) the emulator process has used so far (None off Linux)."""
        return process_cpu_s(self.proc.pid)

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
# The tables the results reader writes: stream_results alone is what the connector writes by default
# (the flat tables are written only when selected).
RESULTS_ONLY = ("stream_results",)
ALL_RESULTS_TABLES = ("stream_results", "stream_result_labels", "stream_result_fields")


def catalog(tables=RESULTS_ONLY):
    return {"streams": [{
        "stream": {"name": table, "json_schema": {}, "supported_sync_modes": ["incremental"],
                   "source_defined_cursor": True, "default_cursor_field": ["created_at"]},
        "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
        "cursor_field": ["created_at"], "primary_key": [["project"], ["dataset"], ["stream"], ["uid"]]} for table in tables]}


def connector_cmd(emu, streams, workdir, max_results=32, parallel=4, tables=RESULTS_ONLY):
    """The connector's command line; CONNECTOR is the console script, see --connector."""
    config = {"api_endpoint": emu.url, "api_token": emu.token,
              "streams": [{"project": PROJECT, "dataset": DATASET, "stream": s} for s in streams],
              "max_results": max_results, "parallel_streams": parallel}
    cfg, cat = os.path.join(workdir, "config.json"), os.path.join(workdir, "catalog.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    with open(cat, "w") as f:
        json.dump(catalog(tables), f)
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


def reader_cmd(kind, emu, streams, workdir, parallel=4, tables=RESULTS_ONLY):
    """`reference`, `connector` or `without <layers>` (stripped_connector.py)."""
    if kind == "connector":
        return connector_cmd(emu, streams, workdir, parallel=parallel, tables=tables)
    if kind.startswith("without "):
        return stripped_cmd(emu, streams, workdir, kind.split(" ", 1)[1])
    return reference_cmd(emu, streams)


def run_reader(cmd, expect=None, label="", env=None, all_tables=False, main_stream="stream_results"):
    """Run cmd, count RECORD/STATE lines on its stdout; wall time start->exit; peak RSS of that child.

    `expect` is the number of `main_stream` records; with `all_tables` the flat tables' rows are
    counted apart (`records` is every RECORD line, `results_records` the `main_stream` ones).
    """
    main_patterns = stream_record_patterns(main_stream)
    stderr_f = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_f, bufsize=0,
                            env=dict(os.environ, **env) if env else None)
    counts = {"records": 0, "states": 0, "first_record_t": None, "bytes": 0, "results_records": 0}

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
            counts["results_records"] += (sum(buf.count(p) for p in main_patterns)
                                          - sum(tail.count(p) for p in main_patterns))
            counts["bytes"] += len(chunk)
            if recs and counts["first_record_t"] is None:
                counts["first_record_t"] = time.perf_counter()
            tail = buf[-32:]
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
    delivered = counts["results_records"] if all_tables else n
    out = {
        "records": n, "states": counts["states"], "wall_s": round(wall, 3),
        "records_per_s": round(n / wall, 1) if wall else None,
        "startup_s": round(counts["first_record_t"] - t0, 3) if counts["first_record_t"] else None,
        "records_per_s_after_first_record": (round(n / (t1 - counts["first_record_t"]), 1)
                                             if counts["first_record_t"] and t1 > counts["first_record_t"] else None),
        "peak_rss_mb": round(rusage.ru_maxrss / 1024.0, 1), "cpu_user_s": round(rusage.ru_utime, 2),
        "cpu_sys_s": round(rusage.ru_stime, 2), "returncode": proc.returncode, "stdout_mb": round(counts["bytes"] / 1e6, 1),
    }
    if all_tables:
        out["results_records"] = delivered
    if proc.returncode != 0 or (expect is not None and delivered != expect):
        out["error"] = "returncode=%s records=%s expected=%s stderr tail: %s" % (proc.returncode, delivered, expect, err[-800:])
        log("  %s: PROBLEM %s" % (label, out["error"]))
    return out


def measure(kind, comments, latency_ms, streams=("triage",), extra_streams=0, parallel=4, env=None, tables=RESULTS_ONLY):
    """Fresh emulator subprocess, optional extra streams (model, at start), one reader run.

    Besides the reader's own figures: the emulator's CPU during the run and the machine's load
    average, which say whether the machine rather than the reader was the limit.
    """
    with EmulatorProcess(comments, latency_ms) as emu, tempfile.TemporaryDirectory(prefix="cm-bench-run-") as wd:
        streams = list(streams)
        for i in range(extra_streams):
            name = "bench-s%d" % (i + 2)
            emu.create_stream(name, model=True, at="start")
            streams.append(name)
        expect = comments * len(streams)
        label = "%s n=%d lat=%gms streams=%d" % (kind, comments, latency_ms, len(streams))
        log("run %s" % label)
        cmd = reader_cmd(kind, emu, streams, wd, parallel=parallel, tables=tables)
        emulator_cpu = emu.cpu_s()
        res = run_reader(cmd, expect=expect, label=label, env=env, all_tables=tables != RESULTS_ONLY)
        emulator_cpu = emu.cpu_s() - emulator_cpu if emulator_cpu is not None else None
        res.update({"reader": kind, "comments": comments, "latency_ms": latency_ms, "streams": len(streams),
                    "expected_records": expect, "tables": list(tables), "load_average_1min": round(os.getloadavg()[0], 2),
                    "reader_cpu_cores": round((res["cpu_user_s"] + res["cpu_sys_s"]) / res["wall_s"], 2),
                    "emulator_cpu_cores": round(emulator_cpu / res["wall_s"], 2) if emulator_cpu is not None else None})
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


# Python's hash seed for every reader counted under valgrind: the same start-up at both sizes (see instructions).
HASH_SEED = "0"


def instructions(kinds=("reference", "connector") + LAYER_VARIANTS, sizes=INSTRUCTION_SIZES):
    """CPU instructions per record of each reader in steady state: (count at the larger size - at the smaller) / difference.

    Counted by valgrind (`--tool=cachegrind --cache-sim=no`), in the reader's process only (not the
    emulator's), so unlike wall time it does not depend on what else the machine runs. Start-up
    cancels out in the difference, as long as it is the same at both sizes: every reader runs with
    one hash seed (HASH_SEED), since the start-up's count moves by some 40 million instructions from
    one random seed to another, which is 40k a record over the 1,000 records between the sizes (the
    per-record cost itself moves by 0.5% between seeds). About 25 s per connector run under valgrind
    (start-up included), so the section takes a few minutes.
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
                                      + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600,
                                      env=dict(os.environ, PYTHONHASHSEED=HASH_SEED))
                found = re.search(rb"I\s+refs:\s+([\d,]+)", done.stderr)
                records = sum(done.stdout.count(p) for p in RECORD_PATTERNS)
                if done.returncode != 0 or not found or records != n:
                    return {"error": "%s n=%d: exit %s, %d records, valgrind said %r"
                                     % (kind, n, done.returncode, records, done.stderr[-300:])}
                counts[kind][str(n)] = int(found.group(1).replace(b",", b""))
    return {
        "sizes": list(sizes), "counts": counts,
        "per_record_k": {kind: round((c[str(big)] - c[str(small)]) / (big - small) / 1000) for kind, c in counts.items()},
        "note": "thousands of instructions per record, steady state, reader process only, PYTHONHASHSEED=%s" % HASH_SEED,
    }


# Speed mechanisms the connector keeps, each as the stripped_connector.py layer that takes it out; each stays
# only while the CPU guard is missed without it (benchmarks/README.md says what each is worth).
KEPT_MECHANISMS = ("gc_tuning", "written_out_checks")


def cpu_guard(sizes=INSTRUCTION_SIZES, mechanisms=KEPT_MECHANISMS):
    """The CPU guard: the connector's instructions per record at most CPU_GUARD times the reference reader's.

    Counted as `instructions` counts them (valgrind, steady state), on what the connector writes by
    default (stream_results; the flat tables only when selected). Each kept speed mechanism is
    counted taken out too: it is `needed` while the guard fails without it.
    """
    kinds = ("reference", "connector") + tuple("without " + m for m in mechanisms)
    counted = instructions(kinds=kinds, sizes=sizes)
    if "per_record_k" not in counted:
        return dict(counted, goal="connector <= %sx the reference's instructions per record" % CPU_GUARD, goal_met=False)
    per_record = counted["per_record_k"]
    reference = per_record["reference"]
    out = dict(counted, goal="connector <= %sx the reference's instructions per record" % CPU_GUARD,
               ratio=ratio(per_record["connector"], reference))
    out["goal_met"] = bool(out["ratio"] is not None and out["ratio"] <= CPU_GUARD)
    out["mechanisms"] = {
        m: {"without_it_k": per_record["without " + m], "worth_k": per_record["without " + m] - per_record["connector"],
            "ratio_without_it": ratio(per_record["without " + m], reference),
            "needed": bool(ratio(per_record["without " + m], reference) > CPU_GUARD)}
        for m in mechanisms}
    return out


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


def multi_stream(comments, latency_ms, counts=MULTI_STREAM_COUNTS):
    """1, 4, 8 and 16 CM streams (each from its first comment) read side by side in one sync, latency-bound.

    Each run reads every stream to its end (`parallel_streams` = the number of streams): nothing may
    be lost (every comment delivered, every stream advanced to its end), and records/s should grow
    with the streams. Each run says how busy the connector, the emulator and the machine were.
    """
    runs = {}
    for k in counts:
        runs[str(k)] = measure("connector", comments, latency_ms, extra_streams=k - 1, parallel=min(k, 16))
    return dict(multi_stream_summary(runs, counts), comments_per_stream=comments, latency_ms=latency_ms)


def multi_stream_summary(runs, counts):
    """The speedups over the first count's run and the goal, from the runs.

    The goal is on steady-state records/s (from the first record to the end): start-up is the same
    whatever the number of streams, and on a loaded machine it alone moved from 5 s to 12 s between
    runs. The whole-run speedup is reported too.
    """
    base, most = str(counts[0]), str(counts[-1])
    steady = {k: ratio(v["records_per_s_after_first_record"], runs[base]["records_per_s_after_first_record"])
              for k, v in runs.items()}
    whole = all("error" not in run and run["streams_fully_advanced"] for run in runs.values())
    rss = max(run["peak_rss_mb"] for run in runs.values())
    return {"runs": runs, "speedup_vs_1": steady,
            "speedup_vs_1_whole_run": {k: ratio(v["records_per_s"], runs[base]["records_per_s"]) for k, v in runs.items()},
            "nothing_lost": whole, "max_peak_rss_mb": rss,
            "goal": "%s streams >= %sx one stream's records/s after the first record, nothing lost, peak RSS < %s MB"
                    % (most, MULTI_STREAM_GOAL, RSS_GOAL_MB),
            "goal_met": bool(whole and (steady.get(most) or 0) >= MULTI_STREAM_GOAL and rss < RSS_GOAL_MB)}


def peak_rss(sizes, tables, save=lambda: None, section=None):
    """The connector's peak RSS reading one CM stream of each size with `tables` selected: under the goal and flat."""
    section = {} if section is None else section
    runs = {}
    section.update({"goal": "< %s MB and flat (spread < %s MB)" % (RSS_GOAL_MB, RSS_FLAT_MB), "tables": list(tables),
                    "sizes_run": [], "runs": runs})
    for n in sizes:
        runs[str(n)] = measure("connector", n, 0, tables=tables)
        section["sizes_run"].append(n)
        save()
    return rss_verdict(section, sizes, all("error" not in run and run["streams_fully_advanced"] for run in runs.values()),
                       "flat = spread between smallest and largest size < %s MB" % RSS_FLAT_MB)


def rss_verdict(section, sizes, nothing_lost, note):
    """A memory section's figures and goal, from its runs: every size under RSS_GOAL_MB, flat, nothing lost."""
    runs = section["runs"]
    rss = [v["peak_rss_mb"] for v in runs.values()]
    section.update({
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in runs.items()},
        "max_mb": max(rss), "spread_mb": round(max(rss) - min(rss), 1), "nothing_lost": nothing_lost, "note": note})
    section["goal_met"] = bool(nothing_lost and max(rss) < RSS_GOAL_MB and section["spread_mb"] < RSS_FLAT_MB)
    if 1_000_000 not in sizes:
        section["note"] += "; the 1,000,000-comment size was NOT run in this invocation"
    return section


def _section_guard(a, results, save):
    log("== CPU guard: instructions per record (valgrind), %s comments" % " and ".join(map(str, INSTRUCTION_SIZES)))
    results["cpu_guard"] = cpu_guard(sizes=a.instruction_sizes)


def _section_capacity(a, results, save):
    log("== emulator capacity")
    results["emulator_capacity"] = emulator_capacity(a.cap_s, max(a.tp_n, 100_000))


def _section_throughput(a, results, save):
    log("== throughput, %d comments, no latency, %d pairs (reported, not a goal)" % (a.tp_n, a.repeats))
    results["throughput_no_latency"] = dict(
        compare(a.tp_n, 0, a.repeats),
        note="not a goal: CPU is gated on instruction counts (cpu_guard); with no latency the wall-time ratio of the "
             "same code moves by 0.13 between runs on two shared cores (benchmarks/README.md)")


def _section_latency(a, results, save):
    log("== throughput, %d comments, %g ms per call, %d pairs" % (a.lat_n, a.latency_ms, a.repeats))
    section = results["throughput_latency"] = dict(compare(a.lat_n, a.latency_ms, a.repeats),
                                                   goal="ratio_after_first_record >= %s" % LATENCY_GOAL)
    section["goal_met"] = bool((section["ratio_after_first_record"] or 0) >= LATENCY_GOAL)
    floor = startup_floor(repeats=1 if a.quick else 5)
    floor["ceiling_ratio"] = ceiling_ratio(section["reference"]["wall_s"], floor)
    floor["note"] = ("ceiling_ratio: reference wall / (reference wall + connector_import_s - reference_import_s), "
                     "what this connector would reach at this size if everything but its extra imports cost "
                     "what the reference's run costs")
    section["startup_floor"] = floor
    log("  imports %.2fs -> ceiling ratio %s" % (floor["connector_import_s"], floor["ceiling_ratio"]))


def _section_multi(a, results, save):
    log("== multi-stream %s, %d comments per stream, %g ms per call" % (a.multi_streams, a.multi_n, a.latency_ms))
    results["multi_stream"] = multi_stream(a.multi_n, a.latency_ms, a.multi_streams)


# The dataset history and its flat table: one export read serves both (history.py).
HISTORY_TABLES = ("dataset_comments", "dataset_comment_labels")


def history_cmd(emu, workdir):
    """The connector reading `HISTORY_TABLES` of PROJECT's datasets, every comment from the start (default windows)."""
    config = {"api_endpoint": emu.url, "api_token": emu.token, "streams": [], "project": PROJECT}
    cfg, cat = os.path.join(workdir, "config.json"), os.path.join(workdir, "catalog.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    with open(cat, "w") as f:
        json.dump({"streams": [{
            "stream": {"name": table, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
                       "source_defined_cursor": True, "default_cursor_field": ["created_at"]},
            "sync_mode": "incremental", "destination_sync_mode": "append_dedup", "cursor_field": ["created_at"]}
            for table in HISTORY_TABLES]}, f)
    return [CONNECTOR, "read", "--config", cfg, "--catalog", cat]


def history_peak_rss(sizes, save=lambda: None, section=None):
    """The connector's peak RSS reading `dataset_comments` with its flat table, PROJECT's datasets of each size.

    Nothing lost: the dataset_comments records are as many as the export serves for PROJECT's datasets
    (the emulator's count), and the run exits 0. No latency: memory, not time, is measured.
    """
    section = {} if section is None else section
    runs = {}
    section.update({"goal": "< %s MB and flat (spread < %s MB)" % (RSS_GOAL_MB, RSS_FLAT_MB), "tables": list(HISTORY_TABLES),
                    "sizes_run": [], "runs": runs})
    for n in sizes:
        with EmulatorProcess(n, 0) as emu, tempfile.TemporaryDirectory(prefix="cm-bench-run-") as wd:
            names = requests.get("%s/api/v1/datasets/%s" % (emu.url, PROJECT), timeout=30,
                                 headers={"Authorization": "Bearer " + emu.token}).json()["datasets"]
            expect = sum(emu.admin("GET", "datasets/%s/%s" % (PROJECT, d["name"]))["exported_comments"] for d in names)
            label = "connector dataset_comments + labels n=%d (%d comments in %d datasets)" % (n, expect, len(names))
            log("run %s" % label)
            run = run_reader(history_cmd(emu, wd), expect=expect, label=label, all_tables=True, main_stream=HISTORY_TABLES[0])
        run.update({"comments": n, "expected_records": expect, "datasets": len(names)})
        log("  -> %d dataset_comments records, %d rows in all in %.2fs, peak RSS %.1f MB" % (
            run["results_records"], run["records"], run["wall_s"], run["peak_rss_mb"]))
        runs[str(n)] = run
        section["sizes_run"].append(n)
        save()
    return rss_verdict(section, sizes, all("error" not in run for run in runs.values()),
                       "comments = the size of the emulator's default scenario (the collections dataset); records counted "
                       "against the export's own count for every dataset of the project; flat = spread < %s MB" % RSS_FLAT_MB)


def _section_history_rss(a, results, save):
    log("== peak RSS of dataset_comments with dataset_comment_labels, sizes %s" % a.sizes)
    results["history_peak_rss"] = {}
    history_peak_rss(a.sizes, save, results["history_peak_rss"])


def _section_rss(a, results, save):
    log("== peak RSS of stream_results with every results table selected, sizes %s" % a.sizes)
    results["peak_rss"] = {}
    peak_rss(a.sizes, ALL_RESULTS_TABLES, save, results["peak_rss"])


def _section_layers(a, results, save):
    log("== layers, %d comments, no latency, %d rounds" % (a.tp_n, a.repeats))
    results["layers_no_latency"] = layers(a.tp_n, a.repeats)


def _section_instructions(a, results, save):
    log("== instructions per record (valgrind), %s comments" % " and ".join(map(str, a.instruction_sizes)))
    results["instructions"] = instructions(sizes=a.instruction_sizes)


def _history_section(script: str, key: str, quick_args, a, results) -> None:
    """A standalone history benchmark (its own emulator at 100 ms per call), run as a subprocess; its goals are this
    section's. Its figures go to results[key]."""
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "history.json")
        args = [sys.executable, os.path.join(HERE, script), "--output", output, "--latency-ms", "%g" % a.latency_ms]
        subprocess.run(args + (list(quick_args) if a.quick else []), cwd=ROOT, check=False)
        section = orjson.loads(open(output, "rb").read()) if os.path.exists(output) else {"error": "%s wrote nothing" % script}
    goals = section.get("goals") or {}
    section["goal_met"] = bool(goals) and all(goal.get("pass") for goal in goals.values())
    results[key] = section


def _section_history(a, results, save):
    log("== dataset_comments: 4 datasets side by side, one dataset in windows (history_bench.py)")
    _history_section("history_bench.py", "history_dataset_comments",
                     ("--datasets-comments", "500", "--big-comments", "5000"), a, results)


def _section_comments_history(a, results, save):
    log("== comments: 4 sources side by side, one source in windows (comments_history_bench.py)")
    _history_section("comments_history_bench.py", "history_comments",
                     ("--comments", "8000", "--source-comments", "3000", "--skip-from-1970"), a, results)


# Every section, in the order `make bench` runs them: (name for --only, function(args, results, save)).
# A section adds its key to results; one with a goal sets `goal` and `goal_met` (printed PASS/FAIL).
# To add one, append it here and, if `make bench` should run it, to DEFAULT_SECTIONS.
SECTIONS = (
    ("guard", _section_guard),
    ("capacity", _section_capacity),
    ("throughput", _section_throughput),
    ("latency", _section_latency),
    ("multi", _section_multi),
    ("rss", _section_rss),
    ("history_rss", _section_history_rss),
    ("layers", _section_layers),
    ("instructions", _section_instructions),
    ("history", _section_history),
    ("comments_history", _section_comments_history),
)
DEFAULT_SECTIONS = ("guard", "capacity", "throughput", "latency", "multi", "rss", "history_rss", "history", "comments_history")

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
    ap.add_argument("--multi-streams", default=None,
                    help="comma-separated stream counts of the multi-stream run, the first the base (default 1,4,8,16)")
    ap.add_argument("--instruction-sizes", default=None,
                    help="the two sizes the CPU guard and `instructions` count under valgrind (default 300,1300)")
    ap.add_argument("--capacity-seconds", type=float, default=None)
    ap.add_argument("--connector", default=None,
                    help="the source-commsmining console script to measure (make bench: one installed like the "
                         "Docker image, without the test and demo extras)")
    ap.add_argument("--only", default=",".join(DEFAULT_SECTIONS),
                    help="comma-separated subset of sections to run (%s); `layers` (what the layers the connector "
                         "must keep cost, see stripped_connector.py) and `instructions` (the same readers' "
                         "instructions per record, valgrind) run only when named" % ", ".join(n for n, _ in SECTIONS))
    args = ap.parse_args(argv)
    global CONNECTOR
    CONNECTOR = os.path.abspath(args.connector or CONNECTOR)
    q = args.quick
    args.tp_n = args.throughput_comments or (10_000 if q else 100_000)
    args.lat_n = args.latency_comments or (600 if q else 3_000)
    args.sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([2_000, 10_000] if q else [10_000, 100_000, 1_000_000])
    args.multi_n = args.multi_comments or (500 if q else 2_000)
    args.multi_streams = (tuple(int(k) for k in args.multi_streams.split(",")) if args.multi_streams
                          else MULTI_STREAM_COUNTS)
    args.cap_s = args.capacity_seconds or (3.0 if q else 10.0)
    args.repeats = args.repeats or (1 if q else 3)
    args.instruction_sizes = (tuple(int(s) for s in args.instruction_sizes.split(",")) if args.instruction_sizes
                              else INSTRUCTION_SIZES)
    only = set(args.only.split(","))
    unknown = only - {name for name, _ in SECTIONS}
    if unknown:
        ap.error("unknown section(s): %s" % ", ".join(sorted(unknown)))

    results = {"machine": dict(machine_info(), connector=os.path.relpath(CONNECTOR, ROOT)), "quick": q,
               "notes": ["Emulator and every reader run as separate subprocesses; wall time is process start to exit "
                         "(includes interpreter + CDK start-up: see startup_s and records_per_s_after_first_record)."]}
    started = time.time()

    def save():
        results["elapsed_s"] = round(time.time() - started, 1)
        results["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        with open(args.output, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")

    for name, section in SECTIONS:
        if name in only:
            section(args, results, save)
            save()

    save()
    print_summary(results)
    return 0


def _by_size(runs):
    """A section's runs keyed by size (as strings, in results.json), smallest first."""
    return sorted(runs.items(), key=lambda item: int(item[0]))


def _pass(section):
    return "PASS" if section.get("goal_met") else "FAIL"


def print_summary(r):
    rows = []
    if "cpu_guard" in r:
        x = r["cpu_guard"]
        if "per_record_k" in x:
            k = x["per_record_k"]
            rows.append(("CPU guard (instructions)", "connector %sk vs reference %sk per record: %sx (goal %s) %s" % (
                k["connector"], k["reference"], x["ratio"], x["goal"], _pass(x))))
            for m, v in x["mechanisms"].items():
                rows.append(("  without %s" % m, "%sk per record (+%sk): %sx, %s" % (
                    v["without_it_k"], v["worth_k"], v["ratio_without_it"], "needed by the guard" if v["needed"] else "NOT needed")))
        else:
            rows.append(("CPU guard (instructions)", "%s FAIL" % (x.get("error") or x.get("skipped"))))
    for key in ("throughput_no_latency", "throughput_latency"):
        if key in r:
            x = r[key]
            title = "%g ms/call" % x["latency_ms"] if x["latency_ms"] else "no latency"
            verdict = "(goal %s) %s" % (x["goal"], _pass(x)) if "goal" in x else "(reported, not a goal)"
            rows.append(("throughput %s, %d comments" % (title, x["comments"]),
                         "connector %.0f rec/s vs reference %.0f rec/s (medians of %d), ratio %s, %s after the "
                         "first record %s; pairs %s" % (
                             x["connector"]["records_per_s"], x["reference"]["records_per_s"], x["repeats"], x["ratio"],
                             x["ratio_after_first_record"], verdict,
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
    if "multi_stream" in r:
        x = r["multi_stream"]
        rows.append(("streams side by side @%gms" % x["latency_ms"],
                     ", ".join("%s: %.0f rec/s after the first record (x%s; whole run x%s)" % (
                         k, v["records_per_s_after_first_record"] or 0, x["speedup_vs_1"][k], x["speedup_vs_1_whole_run"][k])
                               for k, v in _by_size(x["runs"]))
                     + "; nothing lost: %s; peak RSS %s MB (goal %s) %s" % (x["nothing_lost"], x["max_peak_rss_mb"],
                                                                            x["goal"], _pass(x))))
        rows.append(("  CPU use (cores)", ", ".join("%s: connector %s, emulator %s, load %s" % (
            k, v["reader_cpu_cores"], v["emulator_cpu_cores"], v["load_average_1min"]) for k, v in _by_size(x["runs"]))))
    for key, title in (("peak_rss", "peak RSS, every results table"), ("history_peak_rss", "peak RSS, dataset history + labels")):
        if key in r and "peak_rss_mb" in r[key]:
            x = r[key]
            rows.append((title, ", ".join("%s: %.1f MB" % (k, v) for k, v in _by_size(x["peak_rss_mb"]))
                         + "; nothing lost: %s (goal %s) %s" % (x["nothing_lost"], x["goal"], _pass(x))))
    for key, title in (("history_dataset_comments", "dataset_comments history"), ("history_comments", "comments history")):
        if key in r:
            goals = r[key].get("goals") or {}
            rows.append((title + " @100ms", "; ".join("%s x%s %s%s" % (
                name, g.get("ratio", "-"), "PASS" if g.get("pass") else "FAIL",
                " (connector at %s of a core)" % g["connector_cpu_cores"] if g.get("connector_cpu_cores") is not None else "")
                for name, g in goals.items()) or r[key].get("error", "no figures")))
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
    rows.append(("run", "%s s, load average %s at the end (%s cores)" % (
        r.get("elapsed_s"), r.get("load_average_1min_at_end"), r["machine"]["nproc"])))
    w = max(len(a) for a, _ in rows) if rows else 0
    print()
    for a, b in rows:
        print("%s  %s" % (a.ljust(w), b))


if __name__ == "__main__":
    sys.exit(main())
