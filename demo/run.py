"""`make demo`: the product's main job, end to end, on a laptop.

Starts the Communications Mining emulator (a separate process on 127.0.0.1), runs `check`, then a
real sync of `sources` and `stream_results` through PyAirbyte into a local DuckDB file, prints a
summary, and stops the emulator. Run it twice: the second sync only gets new comments.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_DIR = ROOT / ".demo"
STREAMS = [
    {"project": "acme", "dataset": "collections", "stream": "triage"},
    {"project": "acme", "dataset": "collections", "stream": "urgent-only"},
]


def start_emulator() -> "tuple[subprocess.Popen, str, str]":
    ready = Path(tempfile.mkdtemp()) / "ready"
    proc = subprocess.Popen(
        [str(BIN / "commsmining-emulator"), "--port", "0", "--scenario", "demo", "--comments", "500", "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.05)
    line = proc.stdout.readline()
    token = line.split("token=", 1)[1].strip() if "token=" in line else "emulator-token"
    return proc, ready.read_text().strip(), token


def main() -> None:
    import airbyte as ab

    emulator, url, token = start_emulator()
    print(f"emulator: {url} (a stand-in for https://<tenant>.reinfer.io)")
    try:
        config = {"api_endpoint": url, "api_token": token, "streams": STREAMS, "max_filtered": 1024}
        source = ab.get_source(
            "source-commsmining",
            config=config,
            local_executable=str(BIN / "source-commsmining"),
            streams=["sources", "stream_results"],
        )
        source.check()
        print("check: succeeded")
        DEMO_DIR.mkdir(exist_ok=True)
        cache = ab.DuckDBCache(db_path=str(DEMO_DIR / "demo.duckdb"), schema_name="commsmining")
        result = source.read(cache=cache)
        print("\nsync complete:")
        for name, dataset in result.streams.items():
            print(f"  {name:<16} {len(dataset):>6} records")
        with cache.get_sql_engine().connect() as connection:
            from sqlalchemy import text

            rows = connection.execute(
                text(
                    "SELECT label, count(*) AS n FROM ("
                    "  SELECT unnest(CAST(json_extract(stream_labels, '$') AS VARCHAR[])) AS label"
                    "  FROM commsmining.stream_results) GROUP BY label ORDER BY n DESC LIMIT 5"
                )
            ).fetchall()
        print("\ntop predicted labels (meeting the stream threshold):")
        for label, count in rows:
            print(f"  {count:>6}  {label}")
        print(f"\nDuckDB file: {DEMO_DIR / 'demo.duckdb'}")
        print(
            "\nTo sync a real tenant instead, use the same code with:\n"
            + json.dumps(
                {"api_endpoint": "https://<tenant>.reinfer.io", "api_token": "<your API token>",
                 "streams": [{"project": "<project>", "dataset": "<dataset>", "stream": "<stream>"}]},
                indent=2,
            )
            + "\n(see README.md > Use it with PyAirbyte)"
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
