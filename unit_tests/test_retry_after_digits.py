"""Retry-After in seconds is ASCII digits only: other numerals are no wait."""

import pytest

from source_commsmining.transport import retry_after_seconds


@pytest.mark.parametrize("value", ["1_000", "\u0663", "1e3", "\uff13", " 3 x"])
def test_a_retry_after_of_other_than_ascii_digits_is_not_a_wait(value):
    assert retry_after_seconds(value) is None
