"""Signals outside the run's work: while the console script still imports the CDK, a TRACE and 128 + the signal, not a traceback; once every line is written, the run's own exit code."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from unit_tests.conftest import config


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_cdk_is_still_importing_ends_with_a_trace(signum, tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "source-commsmining")
    (tmp_path / "config.json").write_text(json.dumps(config()))
    proc = subprocess.Popen([script, "check", "--config", str(tmp_path / "config.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)  # the CDK takes a second or two to import
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    traces = [json.loads(line) for line in out.splitlines() if line.startswith('{"type": "TRACE"') or line.startswith('{"type":"TRACE"')]
    assert traces and traces[-1]["trace"]["error"]["failure_type"] == "transient_error", out[-2000:]


FINISHED_PROBE = """
import os, signal, sys
from source_commsmining import launch, signals
from source_commsmining.run import _answered  # discover's lines, as run._messages hands them to launch
signals.install_while_starting()
when = sys.argv[1]
finished = signals.finished

def finished_then_signalled(code):
    finished(code)
    if code is not None and when == "before the last flush":
        os.kill(os.getpid(), signal.SIGTERM)  # PyAirbyte's terminate, as soon as it has read what it wanted

def lines():
    yield '{"type":"CATALOG","catalog":{"streams":[]},"note":"the catalog"}'
    if when == "after the answer, before the run ends":
        os.kill(os.getpid(), signal.SIGTERM)  # the run is still going (the CDK's clean-up) when the catalog is read

signals.finished = finished_then_signalled
try:
    launch.launch(_answered(lines()), own_process=True)
finally:
    if when == "while the interpreter shuts down":
        os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.parametrize("when", ["after the answer, before the run ends", "before the last flush", "while the interpreter shuts down"])
def test_a_signal_once_every_line_is_written_ends_the_process_with_the_runs_own_exit_code(when):
    """PyAirbyte terminates `discover` once it has the catalog, and takes any exit code but 0 or -15 for a failure."""
    proc = subprocess.run([sys.executable, "-c", FINISHED_PROBE, when], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "the catalog" in proc.stdout and "TRACE" not in proc.stdout, proc.stdout[-2000:]
