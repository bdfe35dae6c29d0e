"""The connector with layers taken out, for `benchmarks/run.py --only layers` only (never shipped, never a product).

It answers one question: how close to the reference reader could the connector get with no
latency if some layers it must keep cost nothing? Run as the connector's console script, with
what to take out first:

    python benchmarks/stripped_connector.py http,output,mask[,columns] read --config ... --catalog ...

- `http`: /results and /advance sent with one plain `requests.Session` (the rendered URL, query,
  headers and the authenticator's header) instead of the CDK's HttpRequester and HttpClient
  (request options, backoff, error handler, rate limiter) and the connector's response deadline;
- `output`: each RECORD written as bytes with one `orjson.dumps`, instead of the CDK's AirbyteMessage
  serialisation to a str that the PrintBuffer encodes again;
- `mask`: no token scan of output lines;
- `columns`: only the reference reader's columns (uid, project, dataset, stream, created_at,
  comment, prediction, continuation), not the promoted columns.

And the speed mechanisms the connector keeps, each taken out to count what it is worth (the CPU
guard of `benchmarks/run.py` keeps one only while the guard fails without it):

- `gc_tuning`: no `run._tune_gc` (Python's collector as it starts);
- `written_out_checks`: records.build_record with a helper call per checked value, the frozen
  version the equivalence tests compare records.py with (unit_tests/_records_reference.py).

The first four are things the connector must not drop (the CDK's requester, error handling and
backoff; the CDK's message path; the token mask; the columns). This file patches the
connector's and the CDK's internals freely: it is a measuring device, kept next to the benchmark
that uses it, and `integration_tests/test_benchmark_smoke.py` checks that it still reads a stream
to its end.
"""

import sys
import threading

import orjson
import requests

LAYERS = {"http", "output", "mask", "columns", "gc_tuning", "written_out_checks"}


def _plain_http() -> None:
    from source_commsmining import api

    local = threading.local()

    def send(self, cm, stream_slice, body):  # api._Endpoint.send, over a plain requests.Session
        path, params, headers = self.render(cm, stream_slice)
        headers = {**headers, **self.bare.get_authenticator().get_auth_header()}
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        url = self.bare.get_url_base(stream_slice=stream_slice, stream_state=None).rstrip("/") + "/" + path.lstrip("/")
        if body is None:
            return session.get(url, params=params, headers=headers, timeout=60)
        return session.post(url, params=params, headers=headers, json=body, timeout=60)

    api._Endpoint.send = send


def _bytes_output() -> None:
    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from airbyte_cdk.models import Type

    from source_commsmining import launch

    serialize = AirbyteEntrypoint.airbyte_message_to_string

    def to_line(message):
        if message.type == Type.RECORD:
            record = message.record
            return orjson.dumps(
                {"type": "RECORD", "record": {"stream": record.stream, "data": record.data, "emitted_at": record.emitted_at}}
            )
        return serialize(message)

    AirbyteEntrypoint.airbyte_message_to_string = staticmethod(to_line)
    masked_output = launch.masked_output

    class _Output:
        def __init__(self):
            self._context = masked_output()

        def __enter__(self):
            write = self._context.__enter__()
            out = sys.__stdout__.buffer

            def write_line(line):
                if line.__class__ is bytes:
                    out.write(line + b"\n")  # flushed with sys.__stdout__ by messages.flush_stdout
                else:
                    write(line)

            return write_line

        def __exit__(self, *exc):
            return self._context.__exit__(*exc)

    launch.masked_output = _Output


def _no_mask() -> None:
    from source_commsmining import masking

    masking.MaskedStream.write = lambda self, text: self._stream.write(text)


def _reference_columns() -> None:
    from source_commsmining import records

    def build_record(result, project, dataset, stream, model_version=None, problems=None, uid=None):
        comment = result["comment"]
        return {
            "uid": uid or records.comment_uid(comment), "project": project, "dataset": dataset, "stream": stream,
            "created_at": comment.get("created_at"), "comment": comment, "prediction": result.get("prediction"),
            "continuation": result.get("continuation"),
        }

    records.build_record = build_record


def _no_gc_tuning() -> None:
    """run._tune_gc does nothing: Python's collector as it starts."""
    from source_commsmining import run

    run._tune_gc = lambda: None


def _helper_per_value_records() -> None:
    """records.build_record as it was before its checks were written out: one helper call per checked value
    (unit_tests/_records_reference.py, the frozen copy the equivalence tests compare records.py with)."""
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from source_commsmining import records
    from unit_tests import _records_reference

    records.build_record = _records_reference.build_record


def main() -> int:
    layers = set(sys.argv[1].split(",")) if len(sys.argv) > 1 else set()
    if not layers or layers - LAYERS:
        sys.exit("usage: stripped_connector.py LAYER[,LAYER...] read --config ... (layers: %s)" % ", ".join(sorted(LAYERS)))
    del sys.argv[1]
    patches = {"http": _plain_http, "output": _bytes_output, "mask": _no_mask, "columns": _reference_columns,
               "gc_tuning": _no_gc_tuning, "written_out_checks": _helper_per_value_records}
    for layer in sorted(layers):
        patches[layer]()
    from source_commsmining.console import main as console_main

    return console_main()


if __name__ == "__main__":
    sys.exit(main())
