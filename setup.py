"""Packaging for source-commsmining: the connector only (the API emulator is its own distribution in emulator/)."""

from setuptools import find_packages, setup

# airbyte-cdk is pinned to one minor version: the connector reaches into CDK internals
# (the declarative component factory, PrintBuffer flushing through sys.stdout, the
# concurrent read loop of ConcurrentDeclarativeSource) that change between minors.
# unit_tests/test_cdk_contract.py fails loudly when an upgrade breaks one of them.
MAIN_REQUIREMENTS = [
    "airbyte-cdk~=7.39.1",
    "orjson>=3.9",
    "pendulum>=3.0",
]

TEST_REQUIREMENTS = [
    "pytest>=8",
    "requests-mock>=1.11",
    # hypothesis-jsonschema 0.23.1 (the current release) breaks on hypothesis 6.100 and later.
    "hypothesis>=6.80,<6.100",
    "hypothesis-jsonschema==0.23.1",
    "jsonschema>=4.18",
]

setup(
    name="source-commsmining",
    version="0.1.0",
    description="Airbyte source for UiPath Communications Mining (formerly Re:infer).",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["source_commsmining", "source_commsmining.*"]),
    package_data={"source_commsmining": ["manifest.yaml", "schemas/*.json"]},
    install_requires=MAIN_REQUIREMENTS,
    extras_require={
        "tests": TEST_REQUIREMENTS,
        "demo": ["airbyte>=0.30", "duckdb>=1.0"],
    },
    entry_points={
        "console_scripts": ["source-commsmining=source_commsmining.run:run"],
    },
)
