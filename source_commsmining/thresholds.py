"""`stream_label_thresholds`: one row per label threshold of each Communications Mining stream's model.

A stream's definition (`GET /v1/datasets/<project>/<dataset>/streams`) holds its model's
`label_thresholds[]` ({name: [levels] or string, threshold}); kept there as JSON, "at the stream's
threshold" would need JSON functions. Flat, it joins `dataset_comment_labels` on (project, dataset,
label) in plain SQL (docs: Predictions against reviewed labels). A DpathExtractor cannot carry the
stream's name and model version into each threshold, hence this extractor.

Key [project, dataset, stream, label]: a stream has one threshold per label; should the API list a label
twice, the first is kept (the one a reader of the list would find) and a warning names the stream.
"""

import logging
from dataclasses import dataclass
from typing import Any, Iterable, MutableMapping

import requests
from airbyte_cdk.sources.declarative.extractors.record_extractor import RecordExtractor

from source_commsmining.envelope import decode
from source_commsmining.history import label_name
from source_commsmining.taxonomies import label_parent


@dataclass
class StreamThresholdsExtractor(RecordExtractor):
    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        for stream in decode(response, required=("streams",))["streams"] or []:
            model = stream.get("model") if isinstance(stream, dict) else None
            if not isinstance(model, dict):
                continue  # a stream without a model has no thresholds
            seen = set()
            for entry in model.get("label_thresholds") or []:
                name = label_name(entry.get("name")) if isinstance(entry, dict) else None
                threshold = entry.get("threshold") if name else None
                if name is None or threshold.__class__ not in (int, float):
                    continue
                if name in seen:
                    logging.getLogger("airbyte").warning(
                        f"stream_label_thresholds: stream {stream.get('name')} lists label {name!r} twice; the first "
                        "threshold is kept.")
                    continue
                seen.add(name)
                yield {"stream": stream.get("name"), "stream_id": stream.get("id"), "model_version": model.get("version"),
                       "label": name, "parent": label_parent(name), "threshold": threshold}
