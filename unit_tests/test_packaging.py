"""The image, the registry metadata, the changelog and the package agree with each other.

Airbyte builds and publishes the connector from `Dockerfile` + `metadata.yaml`; a mismatch there
(a base image that differs between the two, a version bumped in one place only, an entry point
that does not exist, package data left out of the wheel) only shows up at release time. These
tests make it show up in `make test`. A real `docker build` runs too when a Docker engine answers.
"""

import ast
import fnmatch
import importlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

# The module-scoped root_wheel is built once: the module runs on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("packaging")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
METADATA = ROOT / "metadata.yaml"
CHANGELOG = ROOT / "CHANGELOG.md"  # only a pointer: the changelog is the docs page's table
SETUP_PY = ROOT / "setup.py"
DOCS = ROOT / "docs" / "commsmining.md"

PACKAGE = "source_commsmining"
CONNECTOR = "source-commsmining"
ENTRY_POINT = "source_commsmining.console:main"
DOCKER_REPOSITORY = "airbyte/source-commsmining"
BASE_IMAGE_RE = re.compile(
    r"^(?:docker\.io/)?airbyte/python-connector-base:(?P<version>\d+\.\d+\.\d+)@sha256:(?P<digest>[0-9a-f]{64})$"
)
SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


# ---------------------------------------------------------------------------------- parsing
def dockerfile_instructions() -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with comments dropped and continuation lines joined."""
    instructions: List[Tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def instructions_named(name: str) -> List[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == name]


def env_vars() -> Dict[str, str]:
    values: Dict[str, str] = {}
    for args in instructions_named("ENV"):
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value
            values[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            values[key] = value
    return values


def labels() -> Dict[str, str]:
    values: Dict[str, str] = {}
    for args in instructions_named("LABEL"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            values[key] = value
    return values


def copy_sources() -> List[str]:
    sources: List[str] = []
    for args in instructions_named("COPY") + instructions_named("ADD"):
        tokens = [t for t in shlex.split(args) if not t.startswith("--")]
        assert len(tokens) >= 2, f"COPY needs a source and a destination: {args!r}"
        sources.extend(tokens[:-1])
    return sources


def setup_kwargs() -> Dict[str, Any]:
    """The literal keyword arguments of setup() in setup.py, resolving module-level constants."""
    tree = ast.parse(SETUP_PY.read_text())
    constants: Dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            kwargs: Dict[str, Any] = {}
            for keyword in node.keywords:
                if isinstance(keyword.value, ast.Name) and keyword.value.id in constants:
                    kwargs[keyword.arg] = constants[keyword.value.id]
                else:
                    try:
                        kwargs[keyword.arg] = ast.literal_eval(keyword.value)
                    except ValueError:
                        pass  # computed (e.g. find_packages()): not needed here
            return kwargs
    raise AssertionError("setup.py has no setup(...) call")


def metadata() -> Dict[str, Any]:
    document = yaml.safe_load(METADATA.read_text())
    assert isinstance(document, dict) and isinstance(document.get("data"), dict), "metadata.yaml needs a `data:` mapping"
    return document


def manifest() -> Dict[str, Any]:
    return yaml.safe_load((importlib.resources.files(PACKAGE) / "manifest.yaml").read_text())


def changelog_version() -> str:
    """The newest released version in the docs page's changelog table, the project's one changelog."""
    match = re.search(r"^\|\s*(\d+\.\d+\.\d+\S*)\s*\|\s*(\d{4}-\d{2}-\d{2})\s*\|", DOCS.read_text(), re.M)
    assert match, "docs/commsmining.md's changelog has no '| <version> | <YYYY-MM-DD> |' row"
    return match.group(1)


def normalise_image(image: str) -> str:
    return image[len("docker.io/") :] if image.startswith("docker.io/") else image


# ---------------------------------------------------------------------------------- Dockerfile
def test_dockerfile_is_one_stage_from_the_pinned_python_connector_base():
    froms = instructions_named("FROM")
    assert len(froms) == 1, f"expected a single FROM, found {froms}"
    image = froms[0].split()[0]
    assert BASE_IMAGE_RE.match(image), (
        f"FROM {image!r} must be airbyte/python-connector-base:<x.y.z>@sha256:<64 hex digits> (pinned by digest)"
    )
    assert dockerfile_instructions()[0][0] == "FROM", "FROM must be the first instruction"


def test_dockerfile_base_image_equals_metadata_base_image():
    image = instructions_named("FROM")[0].split()[0]
    base = metadata()["data"]["connectorBuildOptions"]["baseImage"]
    assert BASE_IMAGE_RE.match(base), f"metadata baseImage {base!r} is not pinned by digest"
    assert normalise_image(image) == normalise_image(base), (
        f"Dockerfile FROM {image!r} differs from metadata.yaml connectorBuildOptions.baseImage {base!r}"
    )


def test_dockerfile_installs_the_package_with_pip():
    installs = []
    for args in instructions_named("RUN"):
        for command in re.split(r"&&|;|\|\|", args):
            tokens = shlex.split(command)
            if "pip" in [Path(t).name for t in tokens[:3]] or tokens[:3] == ["python", "-m", "pip"]:
                if "install" in tokens:
                    installs.append(tokens)
    assert installs, "no RUN ... pip install in the Dockerfile"
    assert any("." in tokens[tokens.index("install") + 1 :] for tokens in installs), (
        f"the Dockerfile must `pip install .` (the package itself), found {installs}"
    )
    assert all("--no-cache-dir" in tokens for tokens in installs), "pip install should use --no-cache-dir"
    workdirs = instructions_named("WORKDIR")
    assert workdirs and workdirs[0] == "/airbyte/integration_code", f"WORKDIR must be /airbyte/integration_code, got {workdirs}"


def test_dockerfile_entrypoint_is_the_console_script():
    entrypoints = instructions_named("ENTRYPOINT")
    assert len(entrypoints) == 1, f"expected one ENTRYPOINT, found {entrypoints}"
    assert json.loads(entrypoints[0]) == [CONNECTOR], f"ENTRYPOINT must be the exec form [\"{CONNECTOR}\"]"
    assert env_vars().get("AIRBYTE_ENTRYPOINT") == CONNECTOR, "ENV AIRBYTE_ENTRYPOINT must equal the ENTRYPOINT"


def test_console_script_points_at_a_callable_run():
    # setup.py computes its console scripts (the emulator's only where it ships), so read the entry as text.
    assert f'"{CONNECTOR}={ENTRY_POINT}"' in SETUP_PY.read_text(), f"setup.py console script {CONNECTOR} must point at {ENTRY_POINT}"
    module_name, _, attribute = ENTRY_POINT.partition(":")
    run = getattr(importlib.import_module(module_name), attribute)
    assert callable(run)
    installed = importlib.metadata.entry_points(group="console_scripts", name=CONNECTOR)
    assert [ep.value for ep in installed] == [ENTRY_POINT], (
        "the installed package's console script differs from setup.py: reinstall (make install)"
    )


def test_runs_as_the_airbyte_user_after_installing():
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    users = instructions_named("USER")
    assert users and users[-1] == "airbyte", f"the image must end as USER airbyte, found {users}"
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    last_run = len(keywords) - 1 - keywords[::-1].index("RUN")
    assert last_run < last_user, "USER airbyte must come after the install step (pip installs as root)"


def test_dockerfile_labels():
    values = labels()
    assert values.get("io.airbyte.name") == DOCKER_REPOSITORY == metadata()["data"]["dockerRepository"]
    assert "io.airbyte.version" in values, "LABEL io.airbyte.version is missing"


def test_copied_files_exist_and_exclude_tests_and_the_emulator():
    sources = copy_sources()
    assert "setup.py" in sources and "README.md" in sources, f"setup.py and README.md must be copied, found {sources}"
    assert any(s.rstrip("/") in (PACKAGE, f"./{PACKAGE}") for s in sources), f"{PACKAGE}/ must be copied"
    for source in sources:
        assert source not in (".", "./", "*"), "do not COPY the whole build context"
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist in the repository"
        top = Path(source).parts[0]
        assert top not in ("unit_tests", "integration_tests", "benchmarks", "emulator", "commsmining_emulator", ".venv"), (
            f"the image must not contain {source}"
        )


def test_dockerignore_keeps_the_context_small_and_does_not_hide_copied_files():
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for required in (".venv", ".git", "unit_tests", "integration_tests", "benchmarks", "**/__pycache__", "**/.pytest_cache"):
        assert required in patterns, f".dockerignore should exclude {required}"
    for source in copy_sources():
        for pattern in patterns:
            if pattern.startswith("!"):
                continue
            assert not fnmatch.fnmatch(source.rstrip("/"), pattern), f".dockerignore pattern {pattern!r} hides {source}"


# ---------------------------------------------------------------------------------- versions
def test_versions_agree_everywhere():
    version = setup_kwargs()["version"]
    assert SEMVER_RE.match(version), f"setup.py version {version!r} is not semver"
    found = {
        "setup.py version": version,
        "metadata.yaml dockerImageTag": str(metadata()["data"]["dockerImageTag"]),
        "Dockerfile LABEL io.airbyte.version": labels().get("io.airbyte.version"),
        "docs changelog newest release": changelog_version(),
    }
    assert len(set(found.values())) == 1, f"versions disagree: {found}"


def test_there_is_one_changelog_the_docs_table():
    """Airbyte keeps a connector's changelog in its docs page; a second list would drift from it."""
    if CHANGELOG.exists():
        text = CHANGELOG.read_text()
        assert "docs/commsmining.md" in text, "CHANGELOG.md must only point to the docs page's changelog"
        assert not re.search(r"\d+\.\d+\.\d+", text), "CHANGELOG.md must not list versions: the docs table does"


def test_docs_changelog_lists_the_current_version():
    version = setup_kwargs()["version"]
    text = DOCS.read_text()
    assert "<details>" in text and "</details>" in text, "the docs changelog belongs in a collapsible <details> block"
    rows = re.findall(r"^\|\s*(\d+\.\d+\.\d+\S*)\s*\|\s*(\d{4}-\d{2}-\d{2})\s*\|", text, re.M)
    assert rows, "docs/commsmining.md has no changelog rows"
    assert rows[0][0] == version, f"the newest docs changelog row is {rows[0][0]}, the package is {version}"


# ---------------------------------------------------------------------------------- metadata.yaml
REQUIRED_DATA_KEYS = {
    "ab_internal",
    "allowedHosts",
    "connectorBuildOptions",
    "connectorSubtype",
    "connectorType",
    "definitionId",
    "dockerImageTag",
    "dockerRepository",
    "documentationUrl",
    "githubIssueLabel",
    "license",
    "name",
    "registryOverrides",
    "releaseStage",
    "releases",
    "supportLevel",
    "tags",
}


def test_metadata_has_every_required_key():
    document = metadata()
    assert document.get("metadataSpecVersion") == "1.0", "metadataSpecVersion must be the string \"1.0\""
    missing = REQUIRED_DATA_KEYS - set(document["data"])
    assert not missing, f"metadata.yaml data lacks {sorted(missing)}"


def test_metadata_values():
    data = metadata()["data"]
    assert data["connectorType"] == "source"
    assert data["connectorSubtype"] == "api"
    assert data["dockerRepository"] == DOCKER_REPOSITORY
    assert data["githubIssueLabel"] == CONNECTOR
    assert data["name"] == "UiPath Communications Mining"
    assert data["releaseStage"] == "alpha"
    assert data["supportLevel"] == "community"
    assert data["license"] == "MIT"
    assert {"language:python", "cdk:low-code"} <= set(data["tags"])
    definition_id = uuid.UUID(data["definitionId"])
    assert definition_id.version == 4 and str(definition_id) == data["definitionId"], "definitionId must be a UUID4"
    assert data["documentationUrl"] == "https://docs.airbyte.com/integrations/sources/commsmining"
    assert data["documentationUrl"] == manifest()["spec"]["documentation_url"], "metadata and spec documentation URLs differ"


def test_metadata_allowed_hosts_cover_both_endpoint_forms():
    hosts = metadata()["data"]["allowedHosts"]["hosts"]
    assert "*.reinfer.io" in hosts and "cloud.uipath.com" in hosts, f"allowedHosts {hosts}"
    for host in hosts:
        if host.startswith("${"):
            field = host[2:-1]
            assert host.endswith("}") and field in manifest()["spec"]["connection_specification"]["properties"], (
                f"allowedHosts refers to {host}, which is not a config property"
            )


def test_metadata_registries_and_test_suites():
    data = metadata()["data"]
    overrides = data["registryOverrides"]
    assert overrides["cloud"]["enabled"] is True and overrides["oss"]["enabled"] is True
    # Only the unit tests run with nothing but the connector's folder and its `tests` extra (the API shapes are
    # vendored in api-shapes/); the integration and acceptance tests need the emulator, a local PostgreSQL and the
    # loopback emulator of acceptance-test-config.yml, which only this repository's `make test` provides.
    assert [option["suite"] for option in data["connectorTestSuitesOptions"]] == ["unitTests"]
    assert isinstance(data["ab_internal"].get("ql"), int) and isinstance(data["ab_internal"].get("sl"), int)


def test_metadata_suggests_the_predictions_their_flat_tables_and_the_sources():
    suggested = metadata()["data"]["suggestedStreams"]["streams"]
    streams = {stream["name"] for stream in manifest()["definitions"].values() if isinstance(stream, dict) and stream.get("type") == "DeclarativeStream"}
    assert set(suggested) == {"stream_results", "stream_result_labels", "stream_result_fields", "sources"} and set(suggested) <= streams


# ---------------------------------------------------------------------------------- package data
def test_manifest_and_schemas_are_package_data():
    package = importlib.resources.files(PACKAGE)
    assert (package / "manifest.yaml").is_file()
    loaded = manifest()
    schema_paths = {
        stream["schema_loader"]["file_path"]
        for stream in loaded["definitions"].values()
        if isinstance(stream, dict) and stream.get("type") == "DeclarativeStream"
    }
    assert schema_paths, "no stream schema paths found in the manifest"
    for file_path in schema_paths:
        relative = Path(file_path).relative_to(f"./{PACKAGE}") if file_path.startswith("./") else Path(file_path)
        resource = package.joinpath(*relative.parts)
        assert resource.is_file(), f"{file_path} is not in the installed package"
        assert json.loads(resource.read_text()).get("type") == "object"
    patterns = setup_kwargs()["package_data"][PACKAGE]
    for file_path in schema_paths | {"manifest.yaml"}:
        relative = str(Path(file_path).relative_to(f"./{PACKAGE}")) if file_path.startswith("./") else file_path
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (
            f"{relative} is not matched by setup.py package_data {patterns}: a non-editable install would lack it"
        )


def test_a_wheel_built_from_the_docker_context_carries_the_package_data(tmp_path):
    """What `pip install .` does in the image: build from exactly the files the Dockerfile copies."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    context = tmp_path / "context"
    context.mkdir()
    for source in copy_sources():
        path = ROOT / source
        if not path.exists():
            continue  # test_copied_files_exist_... reports it; the wheel needs only setup.py and the package
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, context / source)
    wheel = build_wheel(context, tmp_path / "wheels")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{PACKAGE}/manifest.yaml"} | {
        f"{PACKAGE}/schemas/{p.name}" for p in (ROOT / PACKAGE / "schemas").glob("*.json")
    }
    assert expected <= names, f"the wheel lacks {sorted(expected - names)}"
    version = setup_kwargs()["version"]
    assert wheel.name.startswith(f"source_commsmining-{version}-"), wheel.name
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert f"{CONNECTOR} = {ENTRY_POINT}" in zipfile.ZipFile(wheel).read(entry_points).decode()


# ---------------------------------------------------------------------------------- what ships
# Airbyte's build template copies the connector's whole directory and runs `pip install .` there:
# whatever the root packaging picks up ships. The emulator is a distribution of its own
# (emulator/pyproject.toml), so the wheel must hold the connector and nothing else.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".demo", ".bench", "*.duckdb*"
)


@pytest.fixture(scope="module")
def root_wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` builds from a copy of the whole checkout (the way Airbyte's template does)."""
    pytest.importorskip("setuptools")
    base = tmp_path_factory.mktemp("root-wheel")
    context = base / "source-commsmining"
    shutil.copytree(ROOT, context, ignore=COPY_IGNORE)
    return build_wheel(context, base / "wheels")


def build_wheel(context: Path, out: Path) -> Path:
    """`pip wheel .` in `context` (offline, no dependencies): the one wheel it builds."""
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_built_from_the_repository_root_holds_the_connector_only(root_wheel):
    with zipfile.ZipFile(root_wheel) as wheel:
        names = wheel.namelist()
        top = {name.split("/", 1)[0] for name in names}
        dist_info = next(t for t in top if t.endswith(".dist-info"))
        assert top == {PACKAGE, dist_info}, f"the connector's wheel holds more than {PACKAGE}: {sorted(top)}"
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert not [n for n in names if "emulator" in n.lower()], [n for n in names if "emulator" in n.lower()]
    assert "commsmining-emulator" not in entry_points and "commsmining_emulator" not in entry_points, entry_points
    assert f"{CONNECTOR} = {ENTRY_POINT}" in entry_points, entry_points


def test_the_emulator_is_a_distribution_of_its_own():
    tomllib = pytest.importorskip("tomllib")
    pytest.importorskip("commsmining_emulator", reason="the emulator is installed by `make install`, not by the tests extra")
    project = tomllib.loads((ROOT / "emulator" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "commsmining-emulator"
    assert project["scripts"] == {"commsmining-emulator": "commsmining_emulator.cli:main"}
    assert not any("source" in dep for dep in project["dependencies"]), "the emulator must not depend on the connector"
    assert "emulator" in (ROOT / "Makefile").read_text(), "make install must install the emulator"
    installed = importlib.metadata.distribution("commsmining-emulator")
    assert [ep.value for ep in installed.entry_points if ep.name == "commsmining-emulator"] == ["commsmining_emulator.cli:main"]


@pytest.mark.clean_venv
def test_the_wheel_in_a_clean_venv_runs_spec_check_and_read_against_the_emulator(root_wheel, tmp_path):
    """The connector as a user gets it: the wheel and its real dependencies from PyPI, nothing else.

    Slow (a minute or two: a fresh venv installs airbyte-cdk and its dependencies; pip's cache helps).
    """
    Emulator = pytest.importorskip("commsmining_emulator", reason="the emulator is installed by `make install`").Emulator

    venv = tmp_path / "venv"
    # A venv without pip of its own (ensurepip would install and byte-compile pip: ~4 s of CPU, ~15 s on
    # a busy machine): this interpreter's pip installs into it (`pip --python`), with the same index.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # --no-compile: the imports compile what they use; pip would byte-compile every installed module first.
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile", str(root_wheel)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    script = venv / "bin" / CONNECTOR
    assert script.exists() and not (venv / "bin" / "commsmining-emulator").exists()
    probe = subprocess.run([str(python), "-c", "import commsmining_emulator"], capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0, "the emulator is importable from the connector's installation"

    # The first run keeps what it compiles, for the three after it, even where PYTHONDONTWRITEBYTECODE
    # is set (as on this project's machines: each run compiled the CDK again, ~3 s of CPU each).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(*args: str) -> List[Dict[str, Any]]:
        completed = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        assert completed.returncode == 0, completed.stderr[-3000:]
        return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]

    assert [m["type"] for m in run("spec") if m["type"] != "LOG"] == ["SPEC"]
    with Emulator(seed=7, scenario="demo", comments=60) as emu:
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"api_endpoint": emu.url, "api_token": emu.token,
                                      "streams": [{"project": "acme", "dataset": "collections", "stream": "triage"}]}))
        statuses = [m["connectionStatus"]["status"] for m in run("check", "--config", str(config)) if m["type"] == "CONNECTION_STATUS"]
        assert statuses == ["SUCCEEDED"]
        catalog = tmp_path / "catalog.json"
        stream = next(m["catalog"]["streams"] for m in run("discover", "--config", str(config)) if m["type"] == "CATALOG")
        results = next(s for s in stream if s["name"] == "stream_results")
        catalog.write_text(json.dumps({"streams": [{
            "stream": results, "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
            "cursor_field": results.get("default_cursor_field", ["created_at"]),
            "primary_key": results.get("source_defined_primary_key", [["uid"]]),
        }]}))
        messages = run("read", "--config", str(config), "--catalog", str(catalog))
        uids = [m["record"]["data"]["uid"] for m in messages if m["type"] == "RECORD"]
        assert uids == emu.consumed_uids("acme", "collections", "triage") and len(uids) == 60
        assert any(m["type"] == "STATE" for m in messages)


def test_console_script_prints_the_spec():
    """The same smoke check the Dockerfile runs at build time, against the installed script."""
    script = Path(sys.executable).parent / CONNECTOR
    if not script.exists():
        pytest.skip(f"{script} is not installed in this environment")
    completed = subprocess.run([str(script), "spec"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    messages = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    specs = [m["spec"] for m in messages if m.get("type") == "SPEC"]
    assert len(specs) == 1, completed.stdout[-3000:]
    assert specs[0]["documentationUrl"] == metadata()["data"]["documentationUrl"]


def _spec_settings() -> Dict[str, Dict[str, Any]]:
    """Every setting a user fills in: the top-level properties and each sign-in method's fields."""
    properties = manifest()["spec"]["connection_specification"]["properties"]
    settings = dict(properties)
    for method in properties["credentials"]["oneOf"]:
        for name, field in method["properties"].items():
            if "const" not in field:  # auth_type picks the method; it is not a setting
                settings[f"credentials.{name}"] = field
    return settings


def test_every_spec_setting_is_described_in_the_spec():
    """The spec is where the settings are described (the set-up form shows it): each needs a title and a description."""
    undescribed = [
        name for name, field in _spec_settings().items()
        if not str(field.get("title") or "").strip() or not str(field.get("description") or "").strip()
    ]
    assert not undescribed, f"spec settings without a title or a description: {undescribed}"


def test_docs_name_every_spec_setting():
    """The docs page points to the spec for the settings, and names each one where it matters."""
    properties = manifest()["spec"]["connection_specification"]["properties"]
    text = DOCS.read_text()
    missing = [name for name in properties if f"`{name}`" not in text]
    assert not missing, f"docs/commsmining.md never names the settings {missing}"
    assert "spec.connection_specification" in text, "docs/commsmining.md must say where the settings are described"


# The headers Airbyte's QA checks (`make qa`, CheckDocumentationHeadersOrder) expect, in this order;
# the page may have its own sections between them.
DOCS_TEMPLATE_HEADERS = [
    "# UiPath Communications Mining",
    "## Prerequisites",
    "## Setup guide",
    "### Step 1: Set up UiPath Communications Mining",
    "### Step 2: Set up the UiPath Communications Mining connector in Airbyte",
    "#### For Airbyte Cloud:",
    "#### For Airbyte Open Source:",
    "## Supported sync modes",
    "## Supported Streams",
    "## IP allow list",
    "### Performance considerations",
    "## Data type map",
    "## Limitations & Troubleshooting",
    "## Changelog",
]


def _manifest_stream_names() -> List[str]:
    document = manifest()
    names = []
    for entry in document["streams"]:
        definition = document["definitions"][entry["$ref"].rsplit("/", 1)[-1]] if "$ref" in entry else entry
        names.append(definition["name"])
    return names


def test_docs_headers_follow_airbytes_source_template():
    headers = [line.strip() for line in DOCS.read_text().splitlines() if re.match(r"^#{1,4} ", line)]
    positions = [headers.index(header) if header in headers else -1 for header in DOCS_TEMPLATE_HEADERS]
    missing = [header for header, position in zip(DOCS_TEMPLATE_HEADERS, positions) if position < 0]
    assert not missing, f"docs/commsmining.md lacks the template's headers {missing}"
    assert positions == sorted(positions), f"docs/commsmining.md's template headers are out of order: {headers}"


def test_docs_have_a_subsection_per_stream_with_its_key_cursor_modes_and_permissions():
    text = DOCS.read_text()
    section = text[text.index("\n## Supported Streams\n") :]
    section = section[: section.index("\n## ", 1)]
    subsections = re.split(r"^### ", section, flags=re.M)[1:]
    for name in _manifest_stream_names():
        found = [body for body in subsections if f"`{name}`" in body.splitlines()[0]]
        assert found, f"docs/commsmining.md has no '### `{name}`' subsection under Supported Streams"
        for fact in ("Primary key", "Sync modes", "Permissions"):
            assert fact in found[0], f"the docs subsection of `{name}` does not say its {fact}"


def test_no_second_configuration_table_to_drift_from_the_spec():
    """A settings table beside the spec drifts from it: README and docs link to the spec instead."""
    properties = manifest()["spec"]["connection_specification"]["properties"]
    for path in (DOCS, ROOT / "README.md"):
        text = path.read_text()
        assert not re.search(r"^#+\s*Configuration\s*$", text, re.M), f"{path.name} has a Configuration section"
        rows = [name for name in properties if name != "streams" and re.search(rf"^\|\s*`{re.escape(name)}`\s*\|", text, re.M)]
        assert not rows, f"{path.name} has a table of the settings {rows}: describe them in the spec"


# ---------------------------------------------------------------------------------- docker build
def _docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _docker_engine_answers(), reason="no Docker engine answers `docker info` here: the real image build is skipped")
def test_docker_image_builds_and_prints_the_spec():
    docker = shutil.which("docker")
    tag = "airbyte/source-commsmining:packaging-test"
    build = subprocess.run([docker, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr[-5000:]
    try:
        inspect = json.loads(subprocess.run([docker, "image", "inspect", tag], capture_output=True, text=True, check=True).stdout)[0]
        config = inspect["Config"]
        assert config["User"] == "airbyte"
        assert config["Entrypoint"] == [CONNECTOR]
        assert config["Labels"]["io.airbyte.version"] == setup_kwargs()["version"]
        run = subprocess.run([docker, "run", "--rm", tag, "spec"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert any(json.loads(line).get("type") == "SPEC" for line in run.stdout.splitlines() if line.startswith("{"))
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, timeout=120)


def test_this_module_runs_as_one_xdist_group(request):
    """`make test` relies on xdist_group (one root_wheel per run, one PostgreSQL per module, PyAirbyte
    imported on one worker): under `--dist loadgroup` each grouped test's id carries its group. A pytest
    or pytest-xdist release that drops it (pytest 9.2 with xdist 3.8 did) fails here, not silently."""
    if not getattr(request.config.option, "loadgroup", False):  # set on each worker by pytest-xdist
        pytest.skip("not run under pytest-xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@packaging"), request.node.nodeid
