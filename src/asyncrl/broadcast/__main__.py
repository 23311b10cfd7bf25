"""`python -m asyncrl.broadcast serve|fetch ...`: the same as `asyncrl broadcast`, without importing the
trainer and inference stacks (torch), so relays and fetches start in well under a second."""

import sys

from asyncrl.broadcast.cli import main

sys.exit(main(sys.argv[1:]))
