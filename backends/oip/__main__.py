"""`python -m backends.oip`: the bundled OIP server (see `backends/oip/run.py`)."""

import sys

from backends.oip.run import main

sys.exit(main())
