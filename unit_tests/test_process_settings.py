"""What importing and running the connector changes in the process: importing patches nothing; only the console script tunes the garbage collector and the allocator."""

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
def test_the_console_script_tunes_its_collector_unless_told_not_to_and_its_allocator(setting, tuned):
    """run._tune_gc, a speed measure kept (`make bench`'s CPU guard counts it taken out); in-process callers keep theirs."""
    probe = (
        "import gc, sys; threshold = gc.get_threshold(); sys.argv = ['source-commsmining', 'spec'];"
        "import source_commsmining.run as run; calls = [];"
        "tune_malloc = run._tune_malloc; run._tune_malloc = lambda: (calls.append(1), tune_malloc());"
        "run.run(); assert calls == [1];"
        "tuned = gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 10_000;"
        "assert tuned or gc.get_threshold() == threshold; sys.stderr.write(f'tuned={tuned}')"
    )
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_COMMSMINING_GC_TUNING"}
    if setting is not None:
        env["SOURCE_COMMSMINING_GC_TUNING"] = setting
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert f"tuned={tuned}" in result.stderr


def test_an_in_process_run_leaves_the_collector_and_the_allocator_alone(capsys, monkeypatch):
    import gc

    from source_commsmining import run

    monkeypatch.setattr(run, "_tune_malloc", lambda: pytest.fail("an in-process run set the process's allocator"))
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    run_cli(["spec"], {}, capsys)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)


MAPPED_PROBE = (
    "import ctypes, sys; from source_commsmining.run import _tune_malloc; _tune_malloc();"
    "libc = ctypes.CDLL(None);"
    "fields = ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost');"
    "Info = type('Info', (ctypes.Structure,), {'_fields_': [(name, ctypes.c_size_t) for name in fields]});"
    "libc.mallinfo2.restype = Info;"
    "body = bytearray(1_000_000); del body;"  # a mapped block freed: glibc's default then serves smaller ones from the heap
    "before = libc.mallinfo2().hblkhd; page = bytearray(700_000);"
    "sys.stderr.write(f'mapped={libc.mallinfo2().hblkhd - before >= 700_000}')"
)


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc's allocator")
@pytest.mark.parametrize("setting, mapped", [(None, True), ("0", False)])
def test_the_allocator_gives_a_freed_page_back_to_the_system_unless_told_not_to(setting, mapped):
    """run._tune_malloc: an export page's body (~550 KB) is a mapping of its own, unmapped when the page is freed."""
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_COMMSMINING_MALLOC_TUNING"}
    if setting is not None:
        env["SOURCE_COMMSMINING_MALLOC_TUNING"] = setting
    result = subprocess.run([sys.executable, "-c", MAPPED_PROBE], capture_output=True, text=True, env=env, check=True)
    assert f"mapped={mapped}" in result.stderr
