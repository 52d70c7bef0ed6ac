"""dropflow side by side with DALiuGE 6.6, Dask and the Python floors: the one command (see README.md).

.venv/bin/python benchmarks/sidebyside.py            # full run: installs the peers, writes results/
.venv/bin/python benchmarks/sidebyside.py --smoke    # seconds: dropflow and the floors on tiny N
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness"))

from main import main

if __name__ == "__main__":
    sys.exit(main())
