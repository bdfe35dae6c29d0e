"""Reading one declarative stream as the console script reads it."""
from typing import Any, Dict, List, Mapping, Optional

from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput, read

from source_commsmining import SourceCommsmining


def read_stream(
    stream: str, config: Mapping[str, Any], sync_mode: SyncMode = SyncMode.full_refresh, state: Optional[List[Any]] = None,
    expecting_exception: bool = False,
) -> EntrypointOutput:
    """One stream read as the console script reads it: the source built with the run's catalog, config and state."""
    catalog = CatalogBuilder().with_stream(stream, sync_mode).build()
    source = SourceCommsmining(catalog=catalog, config=config, state=state)
    return read(source, config, catalog, state, expecting_exception=expecting_exception)


def records_of(output: EntrypointOutput) -> List[Dict[str, Any]]:
    return [message.record.data for message in output.records]
