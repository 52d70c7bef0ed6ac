"""``python -m dropflow.cli`` is the ``dropflow`` command (as is ``python -m dropflow``)."""

import sys

from dropflow.cli import main

sys.exit(main())
