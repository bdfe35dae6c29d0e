"""Root pytest config: the CDK's standard-test fixtures and scenario parametrisation."""

import os

# PyAirbyte reads these once, when it is first imported (by whichever module or plugin comes first, on
# every xdist worker): set them before anything can import it. These machines reach no registry.
os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

pytest_plugins = ["airbyte_cdk.test.standard_tests.pytest_hooks"]

import logging  # noqa: E402

import pytest  # noqa: E402
from airbyte_cdk.test.standard_tests.connector_base import ConnectorTestSuiteBase  # noqa: E402

STANDARD_SUITE_EMULATOR_PORT = 18077  # the port of the configs in acceptance-test-config.yml


@pytest.fixture(autouse=True)
def standard_suite_emulator(request):
    """A fresh emulator for each test of the CDK's standard suite (reading stream_results consumes it).

    Here, at the connector's root, so that `airbyte-cdk connector test` (which generates its own
    test module under .tmp/) gets it too; see integration_tests/test_standard_suite.py.
    """
    if request.cls is None or not issubclass(request.cls, ConnectorTestSuiteBase):
        yield None
        return
    from commsmining_emulator import Emulator

    with Emulator(seed=7, comments=100, scenario="default", port=STANDARD_SUITE_EMULATOR_PORT) as emulator:
        yield emulator


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "runs_long(seconds): a test that takes about this long on 2 cores; started first under pytest-xdist",
    )


def pytest_collection_modifyitems(session, config, items):
    """The long tests first, longest first: under pytest-xdist a long test that starts last ends the
    run alone on an otherwise idle machine. The order is the same on every worker (a stable sort of
    one collection), as xdist requires; everything else keeps its collected order."""
    def seconds(item) -> float:
        mark = item.get_closest_marker("runs_long")
        return float(mark.args[0]) if mark else 0.0

    items.sort(key=lambda item: -seconds(item))


@pytest.fixture(autouse=True)
def airbyte_logger_as_in_a_process_of_its_own():
    """PyAirbyte (the `airbyte` package), once it ran in a test worker, keeps the `airbyte` logger to its own file
    (propagate off): the connector's log lines, which go through that logger, would then vanish from the output
    of every in-process run after it in that worker. Each test gets the logger as a process of its own has it."""
    logger = logging.getLogger("airbyte")
    saved = logger.propagate, list(logger.handlers)
    logger.propagate, logger.handlers = True, []
    yield
    logger.propagate, logger.handlers = saved
