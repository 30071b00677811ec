"""``python -m services``: serve a service or run an interactive client."""

import sys

from services.programs.cli import main

sys.exit(main())
