"""``python -m transports.netns``."""

import sys

from transports.netns import main

sys.exit(main())
