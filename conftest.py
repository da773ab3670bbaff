"""Test against the installed heapalias when this checkout has no in-place build.

``python -m pytest`` puts the checkout first on ``sys.path``, and so does pytest
when it imports this file. The checkout's ``heapalias/`` would then shadow the
installed package without its compiled C core (``pip install .`` builds it into
site-packages, not here).
"""

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent

if not any((CHECKOUT / "heapalias").glob("_native*")):
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != CHECKOUT]
