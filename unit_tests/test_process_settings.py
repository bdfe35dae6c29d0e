"""What importing and running the connector changes in the process: importing patches nothing; only the console script tunes the garbage collector."""

import os
import subprocess
import sys

import pytest

from unit_tests.conftest import run_cli


def test_importing_the_connector_patches_nothing():
    """quick_start.py (a monkeypatch of attributes_doc, for start-up time) is gone."""
    probe = (
        "import gc; threshold = gc.get_threshold();"
        "import attributes_doc, attributes_doc._base as base; original = attributes_doc.get_attributes_doc;"
        "import source_commsmining.run;"
        "assert attributes_doc.get_attributes_doc is original is base.get_attributes_doc;"
        "assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold, gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)


@pytest.mark.parametrize("setting, tuned", [(None, True), ("0", False)])
def test_the_console_script_tunes_its_collector_unless_told_not_to(setting, tuned):
    """run._tune_gc, a speed measure kept (`make bench`'s CPU guard counts it taken out); in-process callers keep theirs."""
    probe = (
        "import gc, sys; threshold = gc.get_threshold(); sys.argv = ['source-commsmining', 'spec'];"
        "from source_commsmining.run import run; run();"
        "tuned = gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 10_000;"
        "assert tuned or gc.get_threshold() == threshold; sys.stderr.write(f'tuned={tuned}')"
    )
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_COMMSMINING_GC_TUNING"}
    if setting is not None:
        env["SOURCE_COMMSMINING_GC_TUNING"] = setting
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert f"tuned={tuned}" in result.stderr


def test_an_in_process_run_leaves_the_collector_alone(capsys):
    import gc

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    run_cli(["spec"], {}, capsys)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
