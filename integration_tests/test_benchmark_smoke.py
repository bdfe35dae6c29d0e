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


@pytest.mark.bench_devices
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


@pytest.mark.bench_devices
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


@pytest.mark.runs_long(15)
def test_multi_stream_section_reads_every_stream_to_its_end_and_reports_the_speedup(tmp_path):
    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--only", "multi", "--multi-streams", "1,3",
         "--multi-comments", "64", "--latency-ms", "1", "--output", str(output)],
        check=True, capture_output=True, timeout=300,
    )
    section = json.loads(output.read_text())["multi_stream"]

    assert set(section["runs"]) == {"1", "3"}
    for streams, run in section["runs"].items():
        assert "error" not in run, run
        assert (run["records"], run["streams_fully_advanced"]) == (64 * int(streams), True)
        assert run["reader_cpu_cores"] > 0 and run["emulator_cpu_cores"] is not None
    assert section["nothing_lost"] is True
    runs = section["runs"]
    steady = "records_per_s_after_first_record"
    assert section["speedup_vs_1"]["3"] == round(runs["3"][steady] / runs["1"][steady], 3)
    assert section["speedup_vs_1_whole_run"]["3"] == round(runs["3"]["records_per_s"] / runs["1"]["records_per_s"], 3)
    assert isinstance(section["goal_met"], bool)


@pytest.mark.runs_long(20)
def test_rss_sections_select_every_table_of_their_reads_and_count_the_comments_delivered(tmp_path):
    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--only", "rss,history_rss", "--sizes", "40,80",
         "--output", str(output)],
        check=True, capture_output=True, timeout=300,
    )
    results = json.loads(output.read_text())
    section = results["peak_rss"]
    assert section["tables"] == ["stream_results", "stream_result_labels", "stream_result_fields"]
    for size, run in section["runs"].items():
        assert "error" not in run, run
        assert run["results_records"] == int(size) and run["streams_fully_advanced"] is True
        assert run["records"] > run["results_records"]  # the flat tables' rows were written too
    assert section["nothing_lost"] is True and section["spread_mb"] == round(section["max_mb"] - min(section["peak_rss_mb"].values()), 1)

    history = results["history_peak_rss"]
    assert history["tables"] == ["dataset_comments", "dataset_comment_labels"]
    for size, run in history["runs"].items():
        assert "error" not in run, run
        # every comment the export serves for the project's datasets, the scenario's collections dataset among them
        assert run["results_records"] == run["expected_records"] > int(size) * 0.9
        assert run["records"] > run["results_records"]  # label rows were written too
    assert history["nothing_lost"] is True and isinstance(history["goal_met"], bool)


def test_cpu_guard_passes_within_the_bound_and_names_the_mechanisms_it_needs(monkeypatch):
    """The guard's arithmetic on given counts (valgrind's own counting is the instructions test's)."""
    spec = importlib.util.spec_from_file_location("bench_run_guard", os.path.join(ROOT, "benchmarks", "run.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    per_record = {"reference": 400, "connector": 700, "without cheap": 740, "without dear": 800}
    monkeypatch.setattr(bench, "instructions", lambda kinds, sizes: {"per_record_k": {k: per_record[k] for k in kinds}})

    guard = bench.cpu_guard(mechanisms=("cheap", "dear"))

    assert (guard["ratio"], guard["goal_met"]) == (1.75, True)
    assert guard["mechanisms"]["cheap"] == {"without_it_k": 740, "worth_k": 40, "ratio_without_it": 1.85, "needed": False}
    assert guard["mechanisms"]["dear"]["needed"] is True
    per_record["connector"] = 761  # 1.9025x
    assert bench.cpu_guard(mechanisms=())["goal_met"] is False
