"""``python -m ddsm`` (also what ``torchrun -m ddsm`` runs)."""

import sys

from . import cli  # the entry point: the one module outside cli/ that imports it

sys.exit(cli.main())
