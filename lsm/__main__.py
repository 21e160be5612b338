"""``python -m lsm``: the command line (see :mod:`lsm.cli`)."""

import sys

from .cli import main

sys.exit(main())
