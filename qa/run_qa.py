"""Airbyte's connector QA checks, run offline on this checkout (`make qa`).

The checks (`airbyte_ops_mcp.connector_qa.checks.ENABLED_CHECKS`, from the `airbyte-internal-ops`
package) expect Airbyte's monorepo and look things up on the network. This script builds that
monorepo in a temporary git repository (the connector's files under
`airbyte-integrations/connectors/source-commsmining/`, the docs page under
`docs/integrations/sources/commsmining.md`) and answers the look-ups as they would be answered for a
new connector that was never released: empty registries, the pinned base image present on Docker
Hub, no earlier version of the connector there, no `metadata.yaml` on Airbyte's master branch. Any
other request fails at once, so a check can never wait on a network that is not there.

The documentation checks only apply from support level 300 up; they are run anyway (their `_run`),
because they are what holds the docs page to Airbyte's template. Four checks fail on purpose: the
project keeps `setup.py` and a `Dockerfile` at the top level. The script exits 1 if any other check
fails.
"""

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, List, Tuple
from unittest import mock

import requests

# google-cloud libraries the package imports warn about Python versions; not about this connector.
warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = "source-commsmining"
DOCS_PAGE = Path("docs/commsmining.md")
MONOREPO_DOCS = Path("docs/integrations/sources/commsmining.md")

# Deliberate: the product's layout keeps setup.py (no Poetry, no pyproject.toml) and a Dockerfile.
EXPECTED_FAILURES = {
    "CheckConnectorUsesPoetry": "setup.py, not Poetry: the project's layout (users build and install it with pip)",
    "CheckConnectorLicenseMatchInPyproject": "no pyproject.toml: the license is in setup.py and metadata.yaml",
    "CheckConnectorVersionMatchInPyproject": "no pyproject.toml: unit_tests/test_packaging.py checks setup.py's version against metadata.yaml",
    "CheckConnectorUsesPythonBaseImage": "a top-level Dockerfile, FROM the base image pinned in metadata.yaml (unit_tests/test_packaging.py)",
}
# Files of this checkout that are not the connector's: the docs page moves to the monorepo's docs/.
NOT_IN_CONNECTOR_FOLDER = ("docs/", "qa/")


def connector_files(root: Path) -> List[str]:
    """What would be submitted: tracked and new files of the working tree, minus ignored ones."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode()
    return sorted(
        f for f in out.split("\0")
        if f and not f.startswith(NOT_IN_CONNECTOR_FOLDER) and (root / f).is_file()
    )


def build_monorepo(root: Path, dest: Path) -> None:
    code_dir = dest / "airbyte-integrations" / "connectors" / CONNECTOR
    for rel in connector_files(root):
        target = code_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    docs = dest / MONOREPO_DOCS
    docs.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / DOCS_PAGE, docs)
    git = ["git", "-c", "user.name=qa", "-c", "user.email=qa@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q", "-b", "master"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "source-commsmining"], cwd=dest, check=True)


def _response(url: str, status: int, body: bytes = b"") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response._content = body
    return response


def _offline_get(url: str, *args, **kwargs) -> requests.Response:
    """Airbyte's master branch has no file of a connector that was never merged."""
    if url.startswith("https://raw.githubusercontent.com/"):
        return _response(url, 404, b"404: Not Found")
    raise requests.exceptions.ConnectionError(f"offline: {url} not fetched")


def _no_network(self, method, url, *args, **kwargs):
    raise requests.exceptions.ConnectionError(f"offline: {method} {url} not fetched")


@contextmanager
def offline() -> Iterator[None]:
    from airbyte_ops_mcp import metadata_validator
    from airbyte_ops_mcp.connector_ops import utils
    from airbyte_ops_mcp.connector_qa.checks import version
    from airbyte_ops_mcp.connector_qa.checks.documentation import documentation

    empty_registry = {"sources": [], "destinations": []}
    with ExitStack() as stack:
        for patch in (
            mock.patch.object(utils, "download_catalog", lambda url: empty_registry),
            mock.patch.object(metadata_validator, "is_image_on_docker_hub", lambda *a, **k: True),
            mock.patch.object(metadata_validator, "get_latest_version_on_dockerhub", lambda *a, **k: None),
            mock.patch.object(version.requests, "get", _offline_get),
            # Documentation links: a link that cannot be fetched is not reported by the check.
            mock.patch.object(documentation.requests, "get", _offline_get),
            mock.patch.object(requests.Session, "request", _no_network),
        ):
            stack.enter_context(patch)
        yield


def run_checks() -> List[Tuple[str, str, str, str]]:
    """(check class, status, message, note) for every enabled check."""
    from airbyte_ops_mcp.connector_ops.utils import Connector
    from airbyte_ops_mcp.connector_qa.checks import ENABLED_CHECKS
    from airbyte_ops_mcp.connector_qa.models import CheckStatus

    connector = Connector(CONNECTOR)
    rows = []
    for check in ENABLED_CHECKS:
        note = ""
        result = check.run(connector)
        if result.status == CheckStatus.SKIPPED and "sl <" in result.message:
            result = check._run(connector)
            note = "forced (sl < 300)"
        status = {CheckStatus.PASSED: "passed", CheckStatus.FAILED: "failed", CheckStatus.SKIPPED: "skipped"}[result.status]
        name = type(check).__name__
        if status == "failed" and name in EXPECTED_FAILURES:
            note = "deliberate: " + EXPECTED_FAILURES[name]
        if name == "CheckDocumentationLinks" and status == "passed":
            note = (note + "; " if note else "") + "offline: links not fetched"
        rows.append((name, status, result.message.strip(), note))
    return rows


def print_table(rows: List[Tuple[str, str, str, str]], verbose: bool) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'check':<{width}}  {'status':<7}  message")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 40}")
    for name, status, message, note in rows:
        first = message.splitlines()[0] if message else ""
        if len(first) > 100 and not verbose:
            first = first[:97] + "..."
        print(f"{name:<{width}}  {status:<7}  {first}" + (f"  [{note}]" if note else ""))
    failed = [r for r in rows if r[1] == "failed" and r[0] not in EXPECTED_FAILURES]
    for name, _, message, _ in failed:
        print(f"\n{name} failed:\n" + textwrap.indent(message, "    "))
    counts = {s: sum(1 for r in rows if r[1] == s) for s in ("passed", "failed", "skipped")}
    deliberate = sum(1 for r in rows if r[1] == "failed" and r[0] in EXPECTED_FAILURES)
    print(
        f"\n{len(rows)} checks: {counts['passed']} passed, {counts['failed']} failed "
        f"({deliberate} deliberate, {len(failed)} not), {counts['skipped']} skipped"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="full first lines of the messages")
    parser.add_argument("--keep", action="store_true", help="keep the temporary monorepo and print its path")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to check (default: this one)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="commsmining-qa-"))
    cwd = os.getcwd()
    try:
        build_monorepo(args.root.resolve(), tmp)
        os.chdir(tmp)  # the checks resolve the connector's paths relative to the working directory
        chatter = io.StringIO()  # the metadata validators print each step
        with offline(), contextlib.redirect_stdout(chatter):
            rows = run_checks()
    finally:
        os.chdir(cwd)
        if args.keep:
            print(f"monorepo kept at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows, args.verbose)
    return 1 if any(r[1] == "failed" and r[0] not in EXPECTED_FAILURES for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
