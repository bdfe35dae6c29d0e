"""source-commsmining: the Airbyte source for UiPath Communications Mining."""

from source_commsmining import quick_start

quick_start.install()  # before anything imports airbyte_cdk: see quick_start.py

from source_commsmining.source import SourceCommsmining  # noqa: E402

__all__ = ["SourceCommsmining"]
