"""``python -m ddsm`` (also what ``torchrun -m ddsm`` runs)."""

import sys

from .cli import main

sys.exit(main())
