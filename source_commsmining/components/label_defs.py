"""The label_defs extractor: every label definition of a dataset, each with its `label_group`."""

from dataclasses import dataclass
from typing import Any, Iterable, MutableMapping

import requests
from airbyte_cdk.sources.declarative.extractors.record_extractor import RecordExtractor

from source_commsmining.envelope import decode

DEFAULT_LABEL_GROUP = "default"


@dataclass
class LabelDefsExtractor(RecordExtractor):
    """Every label definition of a dataset, each with its `label_group`.

    A dataset's labels sit in `label_groups[].label_defs` (one group per taxonomy); the top-level
    `label_defs` are the default group's. A top-level label no group lists (a server without groups)
    is emitted under the group `default`. A name is unique only within its group, so the group is
    part of the stream's key. Not a DpathExtractor with a RecordExpander: the expander copies a
    group's `name` onto its labels (`parent_fields`), but it cannot add the top-level labels no group
    lists, under a group name that is not in the response.
    """

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        dataset = decode(response, required=("dataset",))["dataset"]
        seen = set()
        for group in dataset.get("label_groups") or []:
            for label_def in group.get("label_defs") or []:
                seen.add((group.get("name"), label_def.get("name")))
                yield {**label_def, "label_group": group.get("name")}
        for label_def in dataset.get("label_defs") or []:
            if (DEFAULT_LABEL_GROUP, label_def.get("name")) not in seen:
                yield {**label_def, "label_group": DEFAULT_LABEL_GROUP}
