"""``python -m experiments.search`` and ``testbed-search``: see ``experiments.search.cli``."""

import sys


def main() -> int:
    """The command line, or one clear line when the optional Hypothesis is missing."""
    try:
        from experiments.search.cli import main as search_main
    except ModuleNotFoundError as err:  # Hypothesis is an optional dependency
        if err.name != "hypothesis":
            raise
        print("error: the search needs Hypothesis: pip install -e '.[search]'", file=sys.stderr)
        return 2
    return search_main()


if __name__ == "__main__":
    sys.exit(main())
