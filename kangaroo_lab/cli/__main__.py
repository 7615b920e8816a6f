"""`python -m kangaroo_lab.cli ...` (e.g. under `accelerate launch -m kangaroo_lab.cli train ...`)."""

import sys

from . import main

sys.exit(main())
