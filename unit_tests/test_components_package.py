"""The manifest names its custom classes in one place, the components package, and each name resolves."""

import importlib
import re
from pathlib import Path

import source_commsmining.components as components

MANIFEST = Path(__file__).resolve().parent.parent / "source_commsmining" / "manifest.yaml"


def test_every_class_the_manifest_names_is_exported_by_the_components_package():
    names = re.findall(r"class_name:\s*(\S+)", MANIFEST.read_text())
    assert names, "the manifest names no custom class"
    outside = [name for name in names if not name.startswith("source_commsmining.components.")]
    assert not outside, f"name these through source_commsmining.components: {outside}"
    for name in names:
        module, _, attribute = name.rpartition(".")
        assert getattr(importlib.import_module(module), attribute, None) is not None, name
    assert sorted({name.rpartition(".")[2] for name in names}) == sorted(components.__all__), (
        "components.__all__ lists exactly the classes the manifest names"
    )
