"""``python -m runner.cli``: the ``batch-transform`` command."""

import sys

from runner.cli.main import main

sys.exit(main())
