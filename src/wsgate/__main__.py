"""``python -m wsgate`` is the ``wsgate`` command."""

import sys

from wsgate.cli import main

sys.exit(main())
