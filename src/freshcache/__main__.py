"""``python -m freshcache``: the same command line as the ``freshcache`` script."""

import sys

from freshcache.cli import main

sys.exit(main())
