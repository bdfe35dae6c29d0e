"""`airbyte-cdk connector test`: the CDK's own standard suite, run exactly as Airbyte runs it.

The command finds the connector by its directory's name (`source-commsmining`, a Python source
per metadata.yaml), imports `source_commsmining.SourceCommsmining`, builds it with no arguments
and passes each config of acceptance-test-config.yml to spec/check/discover/read. Those configs
name an emulator on 127.0.0.1:18077, which the root conftest.py starts for each of its tests.

The checkout's directory may have any name, so the test lays out a directory named
`source-commsmining` with the files the command reads and this checkout's package, and runs the
command on it in a subprocess (it calls pytest.main itself).
"""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

# Binds 127.0.0.1:18077 (acceptance-test-config.yml): one worker at a time under pytest-xdist.
pytestmark = pytest.mark.xdist_group("port-18077")

ROOT = Path(__file__).resolve().parent.parent
AIRBYTE_CDK = Path(sys.executable).parent / "airbyte-cdk"
EXPECTED_PASSES = {"test_spec", "test_check", "test_discover", "test_basic_read", "test_fail_read_with_bad_catalog"}


@pytest.mark.e2e
def test_airbyte_cdk_connector_test_passes(tmp_path):
    connector = tmp_path / "source-commsmining"
    (connector / "integration_tests").mkdir(parents=True)
    for name in ("metadata.yaml", "acceptance-test-config.yml", "pytest.ini", "conftest.py"):
        shutil.copy(ROOT / name, connector / name)
    for config in (ROOT / "integration_tests").glob("*.json"):
        shutil.copy(config, connector / "integration_tests" / config.name)
    (connector / "source_commsmining").symlink_to(ROOT / "source_commsmining", target_is_directory=True)

    result = subprocess.run(
        [str(AIRBYTE_CDK), "connector", "test", str(connector)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]

    junit = ElementTree.parse(connector / "build" / "test-results" / "standard-tests-junit.xml")
    outcomes = {}
    for case in junit.iter("testcase"):
        name = case.get("name", "").split("[")[0]
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcomes.setdefault(name, set()).add("failed" if failed else "skipped" if skipped else "passed")
    assert {name for name, seen in outcomes.items() if "passed" in seen} >= EXPECTED_PASSES, outcomes
    assert not any("failed" in seen for seen in outcomes.values()), outcomes
