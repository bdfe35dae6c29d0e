"""Packaging for source-commsmining: the connector only (the API emulator is its own distribution in emulator/)."""

from setuptools import find_packages, setup

# Any airbyte-cdk 7.x from 7.39.1: the few CDK behaviours the connector relies on beyond its public
# surface are pinned by unit_tests/test_cdk_contract.py, which `make test` also runs against the
# newest 7.x (`make test-cdk-latest`), so a release that breaks one fails loudly.
MAIN_REQUIREMENTS = [
    "airbyte-cdk>=7.39.1,<8",
    "idna>=3",  # config.py: an internationalised host is refused with its ASCII (punycode) form
    "orjson>=3.9",
    "pendulum>=3.0",
]

TEST_REQUIREMENTS = [
    # Below 9.2: pytest 9.2 keeps a node's id where pytest-xdist 3.8 cannot add the group to it, so
    # every xdist_group is silently ignored (a module-scoped server then starts on several workers).
    "pytest>=8,<9.2",
    "requests-mock>=1.11",
    # hypothesis-jsonschema 0.23.1 (the current release) breaks on hypothesis 6.100 and later.
    "hypothesis>=6.80,<6.100",
    "hypothesis-jsonschema==0.23.1",
    # The mock-server tests (unit_tests/mock_server/) fix the sync's start: the comments export ends there.
    "freezegun>=1.2",
    "jsonschema>=4.18",
    # `make test` runs the suite on every core (-n auto --dist loadgroup; see integration_tests/conftest.py).
    "pytest-xdist>=3.5",
]

setup(
    name="source-commsmining",
    version="0.2.0",
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
        "console_scripts": ["source-commsmining=source_commsmining.console:main"],
    },
)
