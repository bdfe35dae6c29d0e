"""Reference reader: the floor of work any correct Communications Mining stream reader does.

For each stream, sequentially: GET .../results?max_results=N -> one Airbyte RECORD JSON line per
result -> one STATE line -> flush stdout -> POST .../advance {"sequence_id": <batch continuation>}
-> repeat while `more_results`. One `requests.Session`, `orjson` for (de)serialisation, nothing else
(no CDK, no schema handling, no retries). run.py runs it as a subprocess, like the connector.

usage: reference_reader.py --url URL --token TOKEN [--stream acme/collections/triage ...] [--max-results 32]
"""

import argparse
import sys
import time

import orjson
import requests


def read_stream(session, base, project, dataset, stream, max_results, out):
    prefix = "%s/api/v1/datasets/%s/%s/streams/%s" % (base, project, dataset, stream)
    results_url = prefix + "/results"
    advance_url = prefix + "/advance"
    n = 0
    while True:
        resp = session.get(results_url, params={"max_results": max_results}, timeout=60)
        resp.raise_for_status()
        body = orjson.loads(resp.content)
        emitted_at = int(time.time() * 1000)
        lines = []
        for result in body.get("results") or []:
            comment = result["comment"]
            data = {
                "uid": comment["uid"],
                "project": project,
                "dataset": dataset,
                "stream": stream,
                "created_at": comment.get("created_at"),
                "comment": comment,
                "prediction": result.get("prediction"),
                "continuation": result["continuation"],
            }
            lines.append(orjson.dumps({"type": "RECORD", "record": {"stream": "stream_results", "data": data,
                                                                     "emitted_at": emitted_at}}))
        n += len(lines)
        continuation = body.get("continuation")
        lines.append(orjson.dumps({"type": "STATE", "state": {
            "type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_results"},
                                         "stream_state": {"%s/%s/%s" % (project, dataset, stream): continuation}}}}))
        lines.append(b"")
        out.write(b"\n".join(lines))
        out.flush()
        if continuation is not None:
            adv = session.post(advance_url, data=orjson.dumps({"sequence_id": continuation}),
                               headers={"Content-Type": "application/json"}, timeout=60)
            adv.raise_for_status()
        if not body.get("more_results"):
            return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--stream", action="append", default=None, help="project/dataset/stream (repeatable)")
    ap.add_argument("--max-results", type=int, default=32)
    args = ap.parse_args(argv)
    streams = args.stream or ["acme/collections/triage"]
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + args.token
    out = sys.stdout.buffer
    total = 0
    for spec in streams:
        project, dataset, stream = spec.split("/")
        total += read_stream(session, args.url.rstrip("/"), project, dataset, stream, args.max_results, out)
    print("reference_reader: %d records" % total, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
