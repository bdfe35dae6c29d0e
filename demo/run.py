"""`make demo`: the product's main job, end to end, on a laptop.

Starts the Communications Mining emulator (a separate process on 127.0.0.1), runs `check`, then a
real sync of `sources`, `stream_results` and its flat tables (`stream_result_labels`,
`stream_result_fields`) through PyAirbyte into a local DuckDB file, prints a summary (rows per
stream under the primary key [project, dataset, stream, uid], how many rows have each promoted
column filled, the top labels, and comments per label per day answered with plain SQL over the
flat table), and stops the emulator. Run it twice: the second sync
only gets new comments.

`make demo AUTH=oauth` (or `DEMO_AUTH=oauth`) signs in as an External Application (OAuth client
credentials) at the emulator's token endpoint, with tokens that last 5 s, renewed during the sync;
the default, `AUTH=api_token`, with the emulator's API token.
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


AUTH = os.environ.get("DEMO_AUTH", "api_token")
TOKEN_LIFETIME_SECONDS = "5"  # with AUTH=oauth: short, so that the sync renews the token as it goes


def start_emulator() -> "tuple[subprocess.Popen, str, str]":
    ready = Path(tempfile.mkdtemp()) / "ready"
    proc = subprocess.Popen(
        [str(BIN / "commsmining-emulator"), "--port", "0", "--scenario", "demo", "--comments", "500", "--ready-file", str(ready),
         "--token-lifetime", TOKEN_LIFETIME_SECONDS],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.05)
    line = proc.stdout.readline()
    token = line.split("token=", 1)[1].split()[0] if "token=" in line else "emulator-token"
    return proc, ready.read_text().strip(), token


def credentials(url: str, token: str) -> dict:
    """The sign-in AUTH chooses: the emulator's External Application (its default client), or its API token."""
    if AUTH == "oauth":
        from commsmining_emulator.identity import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPES, TOKEN_PATH

        return {"auth_type": "oauth2_client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                "scopes": " ".join(DEFAULT_SCOPES), "token_url": url + TOKEN_PATH}
    if AUTH != "api_token":
        raise SystemExit(f"AUTH={AUTH!r}: choose api_token (the default) or oauth")
    return {"auth_type": "api_token", "api_token": token}


PROMOTED = ("comment_id", "source_id", "thread_id", "created_at", "timestamp", "last_modified", "subject", "sender",
            "message_count", "model_version", "labels", "stream_labels", "general_fields")


# docs/commsmining.md "Querying the flat tables", query (a), ordered to print the busiest label-days.
COMMENTS_PER_LABEL_PER_DAY = """
SELECT stream, label, CAST(created_at AS DATE) AS day, COUNT(DISTINCT uid) AS comments
FROM commsmining.stream_result_labels
GROUP BY stream, label, CAST(created_at AS DATE)
ORDER BY comments DESC, stream, label, day LIMIT 8
"""


def print_keys(results: "list[dict]") -> None:
    """Rows per Communications Mining stream under the key [project, dataset, stream, uid]."""
    print("\nstream_results, one row per (stream, comment): primary key [project, dataset, stream, uid]")
    streams = sorted({(r["project"], r["dataset"], r["stream"]) for r in results})
    for project, dataset, stream in streams:
        mine = [r for r in results if (r["project"], r["dataset"], r["stream"]) == (project, dataset, stream)]
        print(f"  {project}/{dataset}/{stream:<14} {len(mine):>6} rows  {len({r['uid'] for r in mine}):>6} distinct comments")
    keys = {(r["project"], r["dataset"], r["stream"], r["uid"]) for r in results}
    uids = {r["uid"] for r in results}
    print(
        f"  in all: {len(results)} rows, {len(keys)} distinct keys, {len(uids)} distinct comments: "
        f"{len(keys) - len(uids)} comments are in more than one stream (a row in each)"
        + (
            f"; {len(results) - len(keys)} rows are a stream delivering a comment again (a re-upload), the same key, "
            "one row in a destination that deduplicates on it"
            if len(results) > len(keys)
            else ""
        )
    )


def print_promoted_columns(results: "list[dict]") -> None:
    """How many rows have each promoted column filled: none should be empty on every row."""
    def filled(value: object) -> bool:
        return value not in (None, "", "[]", [])

    counts = {column: sum(1 for r in results if filled(r.get(column))) for column in PROMOTED}
    print("\npromoted columns filled (rows with a value / rows):")
    print("  " + ", ".join(f"{column} {n}/{len(results)}" for column, n in counts.items()))
    versions = sorted({str(r.get("model_version")) for r in results})
    print(f"  model_version (from each stream's definition): {', '.join(versions)}")


# History and ground truth: the dataset export's streams, and the docs' precision/recall SQL (the same file).
HISTORY = ["dataset_comments", "dataset_comment_labels", "stream_label_thresholds"]
PREDICTIONS_VS_REVIEWED = (ROOT / "docs" / "sql" / "predictions_vs_reviewed.sql").read_text()


def print_history(rows: "dict[str, int]", reviewed: int, columns: "list[str]", quality: "list[tuple]") -> None:
    print("\nhistory from the dataset export (moves no stream):")
    for table, n in rows.items():
        print(f"  {table:<24} {n:>6} rows")
    print(f"  {reviewed} comments carry labels a person reviewed (the ground truth)")
    print("\npredictions against reviewed labels, plain SQL (docs/commsmining.md, docs/sql/predictions_vs_reviewed.sql);")
    print("the 10 labels with the most reviewed comments:")
    shown = ["stream", "label", "threshold", "reviewed", "precision_at_threshold", "recall_at_threshold",
             "precision_at_cutoff", "recall_at_cutoff"]
    print("  " + "  ".join(f"{c:>10}" if c not in ("label", "stream") else f"{c:<26}" if c == "label" else f"{c:<12}"
                           for c in ["stream", "label", "threshold", "reviewed", "P@thr", "R@thr", "P@0.5", "R@0.5"]))
    for row in quality:
        values = dict(zip(columns, row))
        cells = []
        for c in shown:
            v = values[c]
            if c == "stream":
                cells.append(f"{v:<12}")
            elif c == "label":
                cells.append(f"{v:<26}")
            else:
                cells.append(f"{'-' if v is None else (f'{float(v):.3f}' if c != 'reviewed' else str(v)):>10}")
        print("  " + "  ".join(cells))


def main() -> None:
    import airbyte as ab

    emulator, url, token = start_emulator()
    print(f"emulator: {url} (a stand-in for https://<tenant>.reinfer.io)")
    print(f"sign-in: {'an External Application (OAuth client credentials), tokens lasting ' + TOKEN_LIFETIME_SECONDS + ' s' if AUTH == 'oauth' else 'an API token'}")
    try:
        config = {"api_endpoint": url, "credentials": credentials(url, token), "streams": STREAMS, "max_filtered": 1024}
        source = ab.get_source(
            "source-commsmining",
            config=config,
            local_executable=str(BIN / "source-commsmining"),
            streams=["sources", "stream_results", "stream_result_labels", "stream_result_fields", *HISTORY],
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
            results = [dict(row._mapping) for row in connection.execute(text("SELECT * FROM commsmining.stream_results"))]
            per_day = connection.execute(text(COMMENTS_PER_LABEL_PER_DAY)).fetchall()
            history_rows = {t: connection.execute(text(f"SELECT count(*) FROM commsmining.{t}")).scalar() for t in HISTORY}
            reviewed = connection.execute(
                text("SELECT count(*) FROM commsmining.dataset_comments WHERE has_reviewed_labels")).scalar()
            connection.execute(text("SET search_path = 'commsmining'"))
            quality = connection.execute(text(f"SELECT * FROM ({PREDICTIONS_VS_REVIEWED}) AS q ORDER BY reviewed DESC, label, stream LIMIT 10"))
            quality_columns, quality_rows = list(quality.keys()), quality.fetchall()
        print_keys(results)
        print_promoted_columns(results)
        print("\ntop predicted labels (meeting the stream threshold):")
        for label, count in rows:
            print(f"  {count:>6}  {label}")
        print("\ncomments per label per day, plain SQL over stream_result_labels (docs/commsmining.md, query (a));")
        print("the busiest 8:")
        for stream, label, day, comments in per_day:
            print(f"  {stream:<12} {str(day)[:10]}  {comments:>4}  {label}")
        print_history(history_rows, reviewed, quality_columns, quality_rows)
        print(f"\nDuckDB file: {DEMO_DIR / 'demo.duckdb'}")
        print(
            "\nTo sync a real tenant instead, use the same code with:\n"
            + json.dumps(
                {"api_endpoint": "https://cloud.uipath.com/<org>/<tenant>/reinfer_",
                 "credentials": {"auth_type": "oauth2_client_credentials", "client_id": "<App ID>",
                                 "client_secret": "<App Secret>", "scopes": "<the scopes granted to the app>"},
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
