"""``python -m dropflow`` is the ``dropflow`` command."""

import sys

from dropflow.cli import main

sys.exit(main())
