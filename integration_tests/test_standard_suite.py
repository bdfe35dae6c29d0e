"""The CDK's standard source tests, driven by acceptance-test-config.yml, against the emulator.

Each test gets a fresh emulator on the port the sample configs name, because reading
stream_results consumes the stream.
"""

import json
from pathlib import Path

import pytest
from airbyte_cdk.test.standard_tests import DeclarativeSourceTestSuite

from commsmining_emulator import Emulator
from source_commsmining import SourceCommsmining

PORT = 18077
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def emulator_on_fixed_port():
    with Emulator(seed=7, comments=100, scenario="default", port=PORT) as emu:
        yield emu


class TestCommsminingStandardSuite(DeclarativeSourceTestSuite):
    connector = SourceCommsmining

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return ROOT

    @classmethod
    def create_connector(cls, scenario):
        config = scenario.get_config_dict(connector_root=ROOT, empty_if_missing=True) if scenario else None
        return SourceCommsmining(config=config or None)
