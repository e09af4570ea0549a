"""Training: the one loop every model in the course uses, its checkpoints, and shipped weights.

Notebooks: every notebook that trains a model.
"""

from course_lib.train.checkpoint import load_checkpoint, save_checkpoint
from course_lib.train.distributed import distributed_loader, init_distributed
from course_lib.train.loop import TrainConfig, Trainer, TrainHistory, TrainingInterrupted
from course_lib.train.schedules import EMALoss, WeightAverage, fit_with_warmup_cosine, warmup_cosine_schedule
from course_lib.train.weights import load_weights, save_weights, shipped_weights

__all__ = [
    "EMALoss",
    "TrainConfig",
    "TrainHistory",
    "TrainingInterrupted",
    "WeightAverage",
    "Trainer",
    "distributed_loader",
    "fit_with_warmup_cosine",
    "init_distributed",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
    "shipped_weights",
    "warmup_cosine_schedule",
]
