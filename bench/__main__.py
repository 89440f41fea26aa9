"""`python -m bench [--quick] [--only CASE ...] [--output BENCHMARKS.md]` (see bench/__init__.py)."""
from __future__ import annotations

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
