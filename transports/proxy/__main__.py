"""``python -m transports.proxy``."""

import sys

from transports.proxy import main

sys.exit(main())
