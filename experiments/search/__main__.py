"""``python -m experiments.search``: see ``experiments.search.cli``."""

import sys

try:
    from experiments.search.cli import main
except ModuleNotFoundError as err:  # Hypothesis is an optional dependency
    if err.name != "hypothesis":
        raise
    print("error: the search needs Hypothesis: pip install -e '.[search]'", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
