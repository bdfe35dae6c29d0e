"""start_date: a value that is not a real date is refused naming the field."""

import pytest

from source_commsmining.config import validate_config
from unit_tests.conftest import config, connection_spec, refused_config



@pytest.mark.parametrize("value", ["2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T25:61:61Z", "0001-01-01T00:00:00Z"])
def test_a_start_date_that_is_not_a_date_is_refused_naming_it(value):
    assert "`start_date`" in refused_config(start_date=value).message


def test_a_real_start_date_is_accepted():
    validate_config(config(start_date="2024-02-29T23:59:59.5+01:00"), connection_spec())
