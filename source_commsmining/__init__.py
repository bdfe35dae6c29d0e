"""source-commsmining: the Airbyte source for UiPath Communications Mining."""

__all__ = ["SourceCommsmining"]


def __getattr__(name: str):
    # Imported on first use, not with the package: the console script (console.py) installs its
    # signal handlers before the CDK, which the source needs, takes its second or two to import.
    if name == "SourceCommsmining":
        from source_commsmining.source import SourceCommsmining

        return SourceCommsmining
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
