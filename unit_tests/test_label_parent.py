"""label_defs' `parent` (the manifest's AddFields): the name without its last " > " level, a string, or null."""

from hypothesis import given, settings, strategies as st
from airbyte_cdk.sources.declarative.models.declarative_component_schema import AddFields as AddFieldsModel
from airbyte_cdk.sources.declarative.parsers.model_to_component_factory import ModelToComponentFactory

from source_commsmining import SourceCommsmining
from source_commsmining.taxonomies import label_parent

_SOURCE = SourceCommsmining()
_LABEL_DEFS = next(s for s in _SOURCE.resolved_manifest["streams"] if s["name"] == "label_defs")
_PARENT_STEPS = [
    ModelToComponentFactory().create_component(AddFieldsModel, step, config={})
    for step in _LABEL_DEFS["transformations"]
    if step["type"] == "AddFields" and any(f["path"] == ["parent"] for f in step["fields"])
]


def _parent(record):
    for step in _PARENT_STEPS:
        step.transform(record, config={})
    return record["parent"]


def _expected(name):
    """The rule stream_results and its flat tables use (taxonomies.label_parent): the manifest must agree."""
    return label_parent(name) if isinstance(name, str) else None


def test_given_nested_names_when_transformed_then_parent_is_the_name_without_its_last_level():
    assert _parent({"name": "Billing > Refund > Partial"}) == "Billing > Refund"
    assert _parent({"name": "Billing > Refund"}) == "Billing"
    assert _parent({"name": "Billing"}) is None


def test_given_parents_that_read_as_python_literals_when_transformed_then_they_stay_strings():
    for parent in ("2024", "True", "None", "[1]", "'q'", '"q"', "{{ 1 }}", " a ", "x\n"):
        assert _parent({"name": f"{parent} > child"}) == parent


def test_given_no_name_or_a_name_that_is_not_text_when_transformed_then_parent_is_null():
    for record in ({}, {"name": None}, {"name": 5}, {"name": " > orphan"}):
        assert _parent(record) is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(["2024", "a", " > ", "'", '"', "\\", "é", "\ud800", "{{", "}}", ""])).map("".join)))
def test_any_name_gets_the_parent_the_rule_gives(name):
    assert _parent({"name": name}) == _expected(name)
