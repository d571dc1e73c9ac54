"""Session-wide test settings.

Tests use one torch thread: their networks are tiny, and on a 2-core machine shared with other work
two OpenMP threads can make each small operation wait on the other core (measured: 10-30x slower).
"""

import torch

torch.set_num_threads(1)
