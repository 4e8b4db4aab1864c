"""``python -m ssemble_async``: the ``ssemble`` command line."""

import sys

from ssemble_async._cli import main

sys.exit(main())
