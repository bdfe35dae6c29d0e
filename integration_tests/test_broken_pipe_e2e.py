"""A reader of stdout that goes away (PyAirbyte once it has the message it asked for, a stopped
platform): the connector ends quietly with exit code 1, not with a traceback on stderr."""

import os
import subprocess

from integration_tests.conftest import CONNECTOR


def test_spec_into_a_closed_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        proc = subprocess.run([CONNECTOR, "spec"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
