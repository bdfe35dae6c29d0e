"""Local emulator of the UiPath Communications Mining (Re:infer) API.

Why this package exists: the connector's end-to-end tests, demo, chaos tests and benchmarks need
a faithful, deterministic, fast API with controllable faults, without a real tenant. It depends
only on the stdlib and orjson and imports nothing from the connector. See README.md.
"""

from .emulator import Emulator
from .faults import Fault

__all__ = ["Emulator", "Fault"]
