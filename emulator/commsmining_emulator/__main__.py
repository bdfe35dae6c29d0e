"""python -m commsmining_emulator: same as the commsmining-emulator console script."""

import sys

from .cli import main

sys.exit(main())
