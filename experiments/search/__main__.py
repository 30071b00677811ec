"""``python -m experiments.search``: see ``experiments.search.cli``."""

import sys

from experiments.search.cli import main

sys.exit(main())
