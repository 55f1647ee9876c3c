"""Runs: build a run's model, data and method from its config, write its record, load a trained
run back, and evaluate it (between the library below and the training engine / workflows above)."""

from robustune.runs.build import build_model, build_run, resolve_weights_file
from robustune.runs.evaluate import RunEvaluation, evaluate_run
from robustune.runs.loading import load_run_config, load_run_model
from robustune.runs.record import write_run_record
from robustune.runs.zeroshot import write_untrained_run, write_zeroshot_run

__all__ = ["RunEvaluation", "build_model", "build_run", "evaluate_run", "load_run_config", "load_run_model",
           "resolve_weights_file", "write_run_record", "write_untrained_run", "write_zeroshot_run"]
