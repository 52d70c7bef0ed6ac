"""Puts the helper modules of sibling test folders (``daemons``, ``lgtools``) on the import path."""

from __future__ import annotations

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _folder in ("managers", "translator"):
    _path = os.path.join(_TESTS, _folder)
    if _path not in sys.path:
        sys.path.append(_path)
