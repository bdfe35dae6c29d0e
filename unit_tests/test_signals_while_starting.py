"""A signal while the console script is still importing the CDK ends with a TRACE and 128 + the signal, not a traceback."""

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
