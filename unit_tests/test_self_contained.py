"""A clone of the repository passes its own tests with nothing beside it: no test, Makefile target or
script reads outside the repository (the API shapes the tests need are vendored in `api-shapes/`)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Ways a path could leave the repository: `../shared`, a "shared" path segment joined onto the root's
# parent, or the root's parent itself.
OUTSIDE = re.compile(r"\.\./shared|[\"']shared[\"']|ROOT\.parent\b|parents\[2\]\s*/\s*[\"']\.\.")


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in out.splitlines():
        path = ROOT / name
        if path.suffix in {".py", ".ini", ".toml", ".cfg", ".yml", ".yaml", ".sh"} or path.name in {"Makefile", "run"}:
            yield name, path


def test_no_file_reads_outside_the_repository():
    offenders = []
    for name, path in _tracked_files():
        if name == "unit_tests/test_self_contained.py":
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "reads outside the repository:\n" + "\n".join(offenders)


def test_the_vendored_api_shapes_are_complete():
    shapes = ROOT / "api-shapes"
    for name in ("commsmining-api.schema.json", "routes.json", "README.md"):
        assert (shapes / name).is_file(), f"api-shapes/{name} is missing"
    assert "Vendored" in (shapes / "README.md").read_text()
