"""How `dataset_comments` gains from reading partitions side by side, at 100 ms per API call.

Two goals, each PASS or FAIL, figures written to a JSON file:

1. datasets: four datasets read in one sync go at least 3.5x the rate (comments per second) of one;
2. windows: one large dataset read in time windows (`dataset_comments_window_days`) at least 3x as
   fast as the same read in one window.

The emulator runs in this process (`latency_ms` on every call; datasets added with
`dataset_export.add_dataset`, uploaded up to an hour ago, so no window is empty, and warmed with
`dataset_export.warm`: each exported comment serialized once beforehand, so that an export call costs
its latency and not the emulator's CPU, about 0.2 ms per comment under one GIL, which on 2 cores
would otherwise bound the parallel reads), the connector is the console script in a process of its own. A read's time is the span of its export calls as the
emulator saw them (from the first call's arrival to the last answer), so the connector's start-up
(the same in every run) does not dilute the ratios; the process's whole time is reported beside it.
Each run must deliver every comment of the datasets once, and end with each dataset's cursor on its
last comment (the per-partition state). Quick run: `--datasets-comments 500 --big-comments 5000`.

    .venv/bin/python benchmarks/history_bench.py [--output benchmarks/results-history.json]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import orjson

from commsmining_emulator import Emulator, dataset_export
from commsmining_emulator.generator import fmt_ms

BIN = Path(sys.executable).parent
CONNECTOR = str(BIN / "source-commsmining")
CATALOG = {"streams": [{"stream": {"name": "dataset_comments", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
                                   "source_defined_cursor": True, "default_cursor_field": ["created_at"]},
                        "sync_mode": "incremental", "destination_sync_mode": "append_dedup", "cursor_field": ["created_at"]}]}
STEP_MS = 30_000  # one comment every 30 s


class CallSpan:
    """Times the export calls the emulator answers (arrival, including the latency it adds, to answer)."""

    def __init__(self, latency_s: float):
        self.latency_s = latency_s
        self.first = None
        self.last = None
        self.calls = 0
        self._lock = threading.Lock()
        self._original = dataset_export.export

    def __enter__(self):
        def timed(world, ds, body):
            start = time.perf_counter() - self.latency_s
            try:
                return self._original(world, ds, body)
            finally:
                end = time.perf_counter()
                with self._lock:
                    self.calls += 1
                    self.first = start if self.first is None else min(self.first, start)
                    self.last = end if self.last is None else max(self.last, end)

        dataset_export.export = timed
        return self

    def __exit__(self, *exc):
        dataset_export.export = self._original

    @property
    def seconds(self) -> float:
        return (self.last - self.first) if self.first is not None else 0.0


def read(emu: Emulator, project: str, start_ms: int, window_days: float, page_size: int) -> Dict[str, Any]:
    config = {"api_endpoint": emu.url, "api_token": emu.token, "streams": [], "project": project,
              "start_date": fmt_ms(start_ms - 60_000), "dataset_comments_window_days": window_days,
              "dataset_export_page_size": page_size, "dataset_comments_lookback_days": 0}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, content in (("config", config), ("catalog", CATALOG)):
            paths[name] = Path(tmp) / f"{name}.json"
            paths[name].write_text(json.dumps(content))
        out = Path(tmp) / "out.jsonl"
        with CallSpan(emu.latency_ms / 1000.0) as span, out.open("wb") as sink:
            started = time.perf_counter()
            proc = subprocess.run([CONNECTOR, "read", "--config", str(paths["config"]), "--catalog", str(paths["catalog"])],
                                  stdout=sink, stderr=subprocess.PIPE, timeout=3600)
            wall = time.perf_counter() - started
        uids: List[str] = []
        state = None
        with out.open("rb") as lines:
            for line in lines:
                if line.startswith(b'{"type":"RECORD"'):
                    uids.append(orjson.loads(line)["record"]["data"]["uid"])
                elif line.startswith(b'{"type":"STATE"'):
                    state = orjson.loads(line)["state"]["stream"]["stream_state"]
    if proc.returncode != 0:
        raise SystemExit(f"the connector failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return {"seconds": round(span.seconds, 3), "process_seconds": round(wall, 3), "calls": span.calls, "records": len(uids),
            "distinct": len(set(uids)), "state": state}


def comments_of(ds: Any) -> int:
    """How many comments the export serves for `ds` (re-upload entries of its queue are versions, not comments)."""
    return sum(1 for i in range(ds.total()) if dataset_export.export_comment(ds, i) is not None)


def cursors_on_last_comment(emu: Emulator, state: Dict[str, Any], datasets: List[Any]) -> bool:
    by_id = {entry["partition"]["dataset_id"]: entry["cursor"]["created_at"] for entry in (state or {}).get("states", [])}
    return all(by_id.get(ds.id) == fmt_ms(ds.created_at_ms(ds.total() - 1)) for ds in datasets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets-comments", type=int, default=2000, help="comments per dataset in the datasets goal")
    parser.add_argument("--datasets-page-size", type=int, default=64, help="export page size in the datasets goal")
    parser.add_argument("--big-comments", type=int, default=100_000, help="comments of the one dataset in the windows goal")
    parser.add_argument("--big-page-size", type=int, default=64, help="export page size in the windows goal")
    parser.add_argument("--windows", type=int, default=12, help="windows the large dataset is read in")
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--output", default="benchmarks/results-history.json")
    args = parser.parse_args()

    results: Dict[str, Any] = {"latency_ms": args.latency_ms, "goals": {}}
    with Emulator(seed=7, comments=50, latency_ms=args.latency_ms) as emu:
        n = args.datasets_comments
        one = [dataset_export.add_dataset(emu.world, "bench-one", "d0", n, step_ms=STEP_MS)]
        four = [dataset_export.add_dataset(emu.world, "bench-four", f"d{k}", n, step_ms=STEP_MS) for k in range(1, 5)]
        for ds in one + four:
            dataset_export.warm(emu.world, ds)
        single = read(emu, "bench-one", one[0].base_ms, 36500, args.datasets_page_size)
        several = read(emu, "bench-four", four[0].base_ms, 36500, args.datasets_page_size)
        rate_one, rate_four = single["records"] / single["seconds"], several["records"] / several["seconds"]
        ratio = rate_four / rate_one
        expected_one, expected_four = comments_of(one[0]), sum(comments_of(ds) for ds in four)
        ok = (ratio >= 3.5 and single["distinct"] == single["records"] == expected_one
              and several["distinct"] == several["records"] == expected_four
              and cursors_on_last_comment(emu, several["state"], four))
        results["goals"]["datasets"] = {"goal": "4 datasets >= 3.5x the rate of 1", "pass": ok, "ratio": round(ratio, 2),
                                        "comments_per_dataset": n, "page_size": args.datasets_page_size,
                                        "one": {k: v for k, v in single.items() if k != "state"},
                                        "four": {k: v for k, v in several.items() if k != "state"}}
        print(f"datasets: 1 dataset {single['records']} comments in {single['seconds']} s ({single['calls']} calls), "
              f"4 datasets {several['records']} in {several['seconds']} s ({several['calls']} calls): x{ratio:.2f} "
              f"-> {'PASS' if ok else 'FAIL'} (goal >= 3.5)")

        m = args.big_comments
        big = dataset_export.add_dataset(emu.world, "bench-big", "big", m, step_ms=STEP_MS)
        dataset_export.warm(emu.world, big)
        span_days = (big.created_at_ms(m - 1) - big.base_ms + 3_600_000 + 120_000) / 86_400_000  # to now
        whole = read(emu, "bench-big", big.base_ms, 36500, args.big_page_size)
        windowed = read(emu, "bench-big", big.base_ms, round(span_days / args.windows, 4), args.big_page_size)
        ratio = whole["seconds"] / windowed["seconds"]
        expected = comments_of(big)
        ok = (ratio >= 3.0 and whole["distinct"] == whole["records"] == expected and windowed["distinct"] == windowed["records"] == expected
              and cursors_on_last_comment(emu, windowed["state"], [big]))
        results["goals"]["windows"] = {"goal": "1 dataset read in windows >= 3x one window", "pass": ok, "ratio": round(ratio, 2),
                                       "comments": m, "windows": args.windows, "page_size": args.big_page_size,
                                       "one_window": {k: v for k, v in whole.items() if k != "state"},
                                       "in_windows": {k: v for k, v in windowed.items() if k != "state"}}
        print(f"windows: {m} comments in one window {whole['seconds']} s ({whole['calls']} calls), in {args.windows} windows "
              f"{windowed['seconds']} s ({windowed['calls']} calls): x{ratio:.2f} -> {'PASS' if ok else 'FAIL'} (goal >= 3)")
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures: {args.output}")
    if not all(goal["pass"] for goal in results["goals"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
