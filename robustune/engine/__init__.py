"""The generic engine: training loop, optimizer/schedule, checkpoints, metrics, distributed."""

from robustune.engine.trainer import TrainingDivergedError, TrainResult, train

__all__ = ["TrainResult", "TrainingDivergedError", "train"]
