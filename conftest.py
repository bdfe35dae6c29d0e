"""Root pytest config: the CDK's standard-test fixtures and scenario parametrisation."""

pytest_plugins = ["airbyte_cdk.test.standard_tests.pytest_hooks"]
