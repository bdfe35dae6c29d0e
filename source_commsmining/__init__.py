"""source-commsmining: the Airbyte source for UiPath Communications Mining."""

from source_commsmining.source import SourceCommsmining

__all__ = ["SourceCommsmining"]
