"""`model_validation`: which model versions of each dataset to read, and the columns each read gets.

Why a partition router of our own: the versions to validate are the union of two lists, the
versions the dataset's stream definitions pin (`GET .../streams`, `model.version`) and the versions
its model tags name (`GET .../model-tags`), de-duplicated, each with the streams and tags that name
it. The manifest reads both lists with the CDK's own SubstreamPartitionRouters; a declarative
router can only list one parent's values, and two parents in one router give a version named by a
stream and a tag twice (read twice) and cannot say which names point at it. This router merges
them: one partition per (dataset, version).
"""

import logging
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from airbyte_cdk.sources.declarative.partition_routers.partition_router import PartitionRouter
from airbyte_cdk.sources.declarative.transformations import RecordTransformation
from airbyte_cdk.sources.types import Config, StreamSlice, StreamState

logger = logging.getLogger("airbyte")
READ_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _version(value: Any) -> Optional[int]:
    """A model version as an integer (the API's type); a digit string is accepted, anything else is not a version."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass
class ModelVersionPartitions(PartitionRouter):
    """One partition per (dataset, model version) named by the dataset's streams or model tags.

    `datasets` yields the datasets in scope (partition `dataset_id`, extra_fields owner/name);
    `stream_versions` and `tag_versions` yield one slice per stream definition / model tag with a
    version (partition `model_version` with the parent's slice, extra_fields project, dataset, name). A dataset
    none of whose streams or tags names a version has no model to validate: it is logged and skipped.
    """

    datasets: Any
    stream_versions: Any
    tag_versions: Any
    config: Config
    parameters: InitVar[Mapping[str, Any]] = field(default=None)

    def stream_slices(self) -> Iterable[StreamSlice]:
        named: Dict[Tuple[str, int], Dict[str, Any]] = {}
        for kind, router in (("streams", self.stream_versions), ("model_tags", self.tag_versions)):
            for parent in router.stream_slices():
                extra = parent.extra_fields
                version = _version(parent.partition.get("model_version"))
                if version is None:
                    logger.warning(
                        f"model_validation: {kind[:-1].replace('_', ' ')} {extra.get('name')!r} of dataset "
                        f"{extra.get('project')}/{extra.get('dataset')} names the model version "
                        f"{parent.partition.get('model_version')!r}, which is not an integer: ignored."
                    )
                    continue
                # The dataset's id from the slice the parent record was read in (GET .../streams or
                # .../model-tags of that dataset), not from the record.
                dataset_id = (parent.partition.get("parent_slice") or {}).get("dataset_id")
                entry = named.setdefault(
                    (dataset_id, version),
                    {"owner": extra["project"], "name": extra["dataset"], "streams": [], "model_tags": []},
                )
                if extra.get("name") not in entry[kind]:
                    entry[kind].append(extra.get("name"))
        with_versions = {dataset_id for dataset_id, _ in named}
        for dataset in self.datasets.stream_slices():
            if dataset.partition["dataset_id"] not in with_versions:
                logger.info(
                    f"model_validation: dataset {dataset.extra_fields['owner']}/{dataset.extra_fields['name']} has no "
                    "model version (none of its streams pins one and it has no model tags): skipped."
                )
        for (dataset_id, version), entry in sorted(named.items(), key=lambda item: (item[1]["owner"], item[1]["name"], item[0][1])):
            yield StreamSlice(
                partition={"dataset_id": dataset_id, "model_version": version},
                cursor_slice={},
                extra_fields={**entry, "streams": sorted(entry["streams"]), "model_tags": sorted(entry["model_tags"])},
            )

    def get_request_params(self, **kwargs: Any) -> Mapping[str, Any]:
        return {}

    def get_request_headers(self, **kwargs: Any) -> Mapping[str, Any]:
        return {}

    def get_request_body_data(self, **kwargs: Any) -> Mapping[str, Any]:
        return {}

    def get_request_body_json(self, **kwargs: Any) -> Mapping[str, Any]:
        return {}

    def set_initial_state(self, stream_state: StreamState) -> None:
        """No parent state: the parents are small lists read whole every sync."""

    def get_stream_state(self) -> Optional[Mapping[str, StreamState]]:
        return None


@dataclass
class ValidationColumns(RecordTransformation):
    """Adds a validation summary's key and context columns, from its partition, and when it was read.

    `read_at` is the time of this read: with project, dataset and model_version it is the primary
    key, so every sync adds one row per version and a destination keeps the time series. Not
    AddFields: the CDK reads a rendered value as a Python literal (a dataset named "2024" would
    become a number) and has no list type for `streams` and `model_tags`.
    """

    def transform(
        self,
        record: Dict[str, Any],
        config: Optional[Mapping[str, Any]] = None,
        stream_state: Optional[Mapping[str, Any]] = None,
        stream_slice: Optional[StreamSlice] = None,
    ) -> None:
        extra = stream_slice.extra_fields if stream_slice is not None else {}
        partition = stream_slice.partition if stream_slice is not None else {}
        record["project"] = extra.get("owner")
        record["dataset"] = extra.get("name")
        record["dataset_id"] = partition.get("dataset_id")
        record["model_version"] = partition.get("model_version")
        record["model_tags"] = list(extra.get("model_tags") or [])
        record["streams"] = list(extra.get("streams") or [])
        record["read_at"] = datetime.now(timezone.utc).strftime(READ_AT_FORMAT)
