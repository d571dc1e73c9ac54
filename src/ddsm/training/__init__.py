"""Training: one configuration, one loop, one way to feed it, one way to save and resume it.

- ``config``: :class:`TrainConfig` and the learning-rate schedule;
- ``streams``: :class:`Batch` and the :class:`BatchStream` protocol (a data set in memory,
  :class:`TensorStream`; Sudoku's grid stream implements it too);
- ``loop``: :func:`train`, the loop itself, and :func:`evaluate`;
- ``state``: checkpoints that survive crashes, resume checks, SIGTERM/SIGINT handling.
"""

from .config import SCHEDULES, TrainConfig, lr_at
from .loop import evaluate, micro_batch_bounds, train
from .state import BACKUP_DIR, TrainingInterrupted, recover_checkpoint
from .streams import Batch, BatchStream, EpochSampler, MicroBatch, TensorStream

__all__ = ["TrainConfig", "train", "evaluate", "lr_at", "EpochSampler", "SCHEDULES", "TrainingInterrupted",
           "micro_batch_bounds", "recover_checkpoint", "BACKUP_DIR", "Batch", "BatchStream", "MicroBatch",
           "TensorStream"]
