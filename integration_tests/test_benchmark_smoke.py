"""`make bench` must keep working: tiny latency, layers and instructions sections, checked for what they report.

Only the machinery is checked here (every record counted, the ratios and the start-up floor
computed from the runs); the numbers themselves belong to benchmarks/results.json, never to a test.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import orjson
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.e2e


@pytest.mark.runs_long(10)
def test_latency_section_counts_every_record_and_reports_the_startup_floor(tmp_path):
    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--only", "latency",
         "--latency-comments", "96", "--latency-ms", "1", "--output", str(output)],
        check=True, capture_output=True, timeout=300,
    )
    section = json.loads(output.read_text())["throughput_latency"]

    for kind in ("reference", "connector"):
        run = section[kind]
        assert "error" not in run, run
        assert (run["records"], run["returncode"]) == (96, 0)
    assert section["connector"]["streams_fully_advanced"] is True
    assert section["ratio"] == round(section["connector"]["records_per_s"] / section["reference"]["records_per_s"], 3)

    floor = section["startup_floor"]
    assert all(0 < floor[key] < 30 for key in ("connector_import_s", "cdk_framework_import_s", "reference_import_s"))
    reference_wall = section["reference"]["wall_s"]
    extra_imports = floor["connector_import_s"] - floor["reference_import_s"]
    assert floor["ceiling_ratio"] == round(reference_wall / (reference_wall + extra_imports), 3)


@pytest.mark.runs_long(10)
def test_layers_section_reads_every_stream_to_its_end_with_each_layer_taken_out(tmp_path):
    """The stripped connector (benchmarks/stripped_connector.py) patches internals that may move: it must still work."""
    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--only", "layers",
         "--throughput-comments", "64", "--output", str(output)],
        check=True, capture_output=True, timeout=300,
    )
    section = json.loads(output.read_text())["layers_no_latency"]

    assert set(section["runs"]) == {"reference", "connector", "without http,output,mask", "without http,output,mask,columns"}
    for kind, runs in section["runs"].items():
        for run in runs:
            assert "error" not in run, (kind, run)
            assert (run["records"], run["returncode"]) == (64, 0), kind
            if kind != "reference":
                assert run["streams_fully_advanced"] is True, kind
    assert set(section["ratio_after_first_record"]) == set(section["runs"]) - {"reference"}


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_section_counts_a_readers_instructions_per_record():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    section = bench.instructions(kinds=("reference",), sizes=(20, 60))

    assert "error" not in section, section
    counts = section["counts"]["reference"]
    assert counts["60"] > counts["20"] > 0
    assert section["per_record_k"]["reference"] == round((counts["60"] - counts["20"]) / 40 / 1000)
    orjson.loads(orjson.dumps(section))  # what run.py saves
