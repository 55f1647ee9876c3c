"""Out-of-distribution suites: ``corruptions`` (ImageNet-C style), ``imagenet-a``, ``imagenet-r``, ``imagenet-p``.

Options (``robustune eval --option key=value`` → ``EvalContext.options``):

- ``corruption_root``: an ImageNet-C style tree, a generated set (``robustune corrupt``) or a
  CIFAR-C folder. ``corruptions`` (default: all present) and ``severities`` (default: all present)
  select cells; ``cells_in_memory``: decode each cell once per process and keep it (uint8) for
  the next model evaluated in the same process (small sets only). ``reference_results``: a results.json (or its run / eval folder) whose corruption
  cells normalise CE / mCE; ``normalizer``: ``auto`` (reference if given, else the AlexNet table
  for a 1000-class model with all 15 × 5 ImageNet-C cells, else none) | ``alexnet`` | ``none``.
- ``imagenet_a_root`` / ``imagenet_r_root``: 200 wnid folders each.
- ``imagenet_p_root``; ``perturbations``; ``imagenet_p_reference``: a results.json or a mapping
  perturbation → flip probability (and ``imagenet_p_reference_t5d``) normalising FR / mFR / mT5D;
  ``max_sequences`` caps sequences per perturbation; ``imagenet_p_difficulty`` (1-5, default 1)
  reads a noise perturbation's ``<name>_<d>`` folder and steps the others' frames by d, as
  Hendrycks's ImageNet-P test script does (cells and mFR then carry ``/difficulty=d``).

One cell per (corruption, severity), so an interrupted evaluation resumes cell by cell; the
summary cells (mCE, relative mCE, CE per corruption, mean corruption accuracy) are recomputed from
the stored cells on every run (cheap), so they always match the cells and the reference. mCE and
relative mCE average the benchmark corruptions (not the four ImageNet-C extras, which get their own
CE cells); a number that cannot be given is logged with its reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from robustune.data.robustness_sets import (
    PerturbationSequences,
    available_cells,
    corruption_cell,
    imagenet_subset_indices,
    memory_cell,
)
from robustune.data.splits import model_input_options
from robustune.eval import corruption_metrics as cm
from robustune.eval.clean import predict
from robustune.eval.results import Cell, EvalResults, save_per_sample
from robustune.eval.suites import EvalContext, register_suite

log = logging.getLogger(__name__)
SUITE = "corruptions"


def corruption_key(corruption: str, severity: int) -> str:
    return f"{SUITE}/{corruption}/{severity}"


def corruption_root(ctx: EvalContext, made_by: str) -> Path:
    """The ``corruption_root`` option of a corruptions suite; missing, an error naming ``made_by``."""
    root = ctx.options.get("corruption_root")
    if not root:
        raise ValueError(f"the corruptions suite needs --option corruption_root=DIR ({made_by})")
    return Path(root)


def parse_corruption_key(key: str) -> tuple[str, int] | None:
    """``corruptions/<corruption>/<severity>`` → (corruption, severity); None for any other key."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == SUITE and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def _listify(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]


def selected_cells(root: str | Path, options: Mapping[str, Any]) -> dict[str, list[int]]:
    """The (corruption → severities) to evaluate: those present, filtered by the options."""
    from robustune.corruptions import resolve_corruptions, resolve_severities

    present = available_cells(root)
    if not present:
        raise FileNotFoundError(f"no <corruption>/<severity>/ folders or CIFAR-C arrays under {str(root)!r}")
    canonical = [*cm.COMMON_CORRUPTIONS, *cm.EXTRA_CORRUPTIONS]
    default = sorted(present, key=lambda c: (canonical.index(c) if c in canonical else len(canonical), c))
    wanted = resolve_corruptions(options["corruptions"]) if options.get("corruptions") else default
    sev = resolve_severities(options["severities"]) if options.get("severities") else None
    missing = [c for c in wanted if c not in present]
    if missing and options.get("corruptions"):
        raise FileNotFoundError(f"corruption(s) {', '.join(missing)} not found under {root}")
    return {c: [s for s in present[c] if sev is None or s in sev] for c in wanted if c in present}


def _input_size(model: nn.Module) -> int | None:
    size = getattr(model, "input_size", None)
    return int(size[-1]) if size else None  # None: the model states no size; images go in as they are


def _fit_to_model(ds: Dataset, model: nn.Module) -> Dataset:
    """Evaluate images at their own size when it matches the model; else resize + centre-crop (logged)."""
    size = _input_size(model)
    if size and tuple(ds[0][0].shape[-2:]) != (size, size):
        log.info("corrupted images are %s, the model takes %d px: resizing", tuple(ds[0][0].shape[-2:]), size)
        ds.transform = model_input_options(model)["transform"]
    return ds


def _folder_classes(ctx: EvalContext, root: Path, corruption: str, severity: int) -> list[str] | None:
    """The model's class order when the copy's class folders are the model's classes.

    A copy with some but not all of them (or another number of classes) is an error naming the
    differing classes; folder names disjoint from the model's class names (e.g. wnids vs readable
    names, same count) fall back to the manifest's order, else sorted folders.
    """
    from robustune.data.folder import find_classes
    from robustune.data.splits import check_same_classes

    cell = root / corruption / str(severity)
    if not ctx.classes or not cell.is_dir():
        return None
    folders = find_classes(cell)
    if set(folders) == set(ctx.classes):
        return list(ctx.classes)
    if set(folders) & set(ctx.classes) or len(folders) != len(ctx.classes):
        check_same_classes(sorted(ctx.classes), folders, "the model's classes", f"the corrupted copy {cell}")
    return None


@register_suite(SUITE)
def corruptions_suite(ctx: EvalContext):
    root = corruption_root(ctx, "an ImageNet-C style tree, a CIFAR-C folder, or one made by `robustune corrupt`")
    cells = selected_cells(root, ctx.options)
    for corruption, severities in cells.items():
        for severity in severities:
            key = corruption_key(corruption, severity)

            def compute(c: str = corruption, s: int = severity, key: str = key) -> Cell:
                classes = _folder_classes(ctx, root, c, s)
                if ctx.options.get("cells_in_memory"):  # decode once per process (small sets; the demo)
                    ds = memory_cell(root, c, s, classes)
                else:
                    ds = corruption_cell(root, c, s, classes=classes)
                pred, y = predict(ctx.model, _fit_to_model(ds, ctx.model), ctx.batch_size, ctx.device)
                correct = pred == y
                save_per_sample(ctx.out_dir, key, correct=correct, pred=pred, label=y)
                return Cell.from_outcomes(key, SUITE, "top1_accuracy", correct, corruption=c, severity=s,
                                          error=1 - correct.float().mean().item(), root=str(root))

            yield key, compute
    yield f"{SUITE}/summary", lambda: corruption_summary_cells(ctx.results, ctx.options,
                                                              n_classes=len(ctx.classes))


def corruption_errors(results: EvalResults) -> dict[str, dict[int, float]]:
    """corruption → severity → top-1 error, from a results' per-cell accuracies."""
    errors: dict[str, dict[int, float]] = {}
    for cell in results.cells.values():
        if cell.suite == SUITE and cell.metric == "top1_accuracy":
            errors.setdefault(cell.details["corruption"], {})[int(cell.details["severity"])] = 1 - cell.value
    return errors


def load_results(path: str | Path) -> EvalResults:
    """results.json, or the folder that holds it (an eval folder, or a run folder with eval/)."""
    path = Path(path)
    for candidate in (path, path / "results.json", path / "eval" / "results.json"):
        if candidate.is_file():
            return EvalResults.load(candidate)
    raise FileNotFoundError(f"no results.json at {str(path)!r} (nor in {path}/ or {path}/eval/)")


def model_label(results: EvalResults, fallback: str = "model") -> str:
    m = results.model or {}
    return str(m.get("run_name") or m.get("name") or fallback)


def reference_from_results(path: str | Path) -> cm.ReferenceErrors:
    """A reference model's corruption errors and clean error, named after its run."""
    res = load_results(path)
    errors = corruption_errors(res)
    if not errors:
        raise ValueError(f"reference results {path} have no corruption cells; evaluate the reference "
                         "model with --suite clean,corruptions on the same corrupted set first")
    clean = 1 - res.cells["clean"].value if "clean" in res.cells else None
    return cm.ReferenceErrors(name=f"reference model: {model_label(res, str(path))}", errors=errors,
                              clean_error=clean)


def _choose_reference(options: Mapping[str, Any], errors: dict, n_classes: int) -> cm.ReferenceErrors | None:
    mode = str(options.get("normalizer", "auto")).lower()
    if mode == "none":
        return None
    if options.get("reference_results") and mode in ("auto", "reference"):
        return reference_from_results(options["reference_results"])
    full = all(sorted(errors.get(c, {})) == [1, 2, 3, 4, 5] for c in cm.COMMON_CORRUPTIONS)
    if mode == "alexnet" or (mode == "auto" and full and n_classes == 1000):
        return cm.alexnet_reference(float(options.get("alexnet_clean_error", cm.ALEXNET_CLEAN_ERROR)))
    log.info("no CE normaliser (give --option reference_results=RUN for mCE); reporting mean corruption accuracy")
    return None


def corruption_summary_cells(results: EvalResults, options: Mapping[str, Any], n_classes: int = 0) -> list[Cell]:
    """mean corruption accuracy, the unnormalised mCE of Hendrycks's test script, and with a
    normaliser mCE and relative mCE over the benchmark corruptions, CE per corruption (extras apart).

    A number that cannot be given (mCE, relative mCE) is logged with its reason and the reason is
    stored in the ``corruptions/mean_corruption_accuracy`` cell.
    """
    errors = corruption_errors(results)
    if not errors:
        return []
    clean = 1 - results.cells["clean"].value if "clean" in results.cells else None
    n = sum(c.n or 0 for c in results.cells.values() if c.suite == SUITE and c.metric == "top1_accuracy")
    reference = _choose_reference(options, errors, n_classes)
    try:
        summary = cm.summarize_corruptions(errors, clean, reference)
    except ValueError as exc:  # logged below with the other reasons
        summary = cm.summarize_corruptions(errors, clean, None)
        summary.mce_note = str(exc)
    for what, note in (("mCE", summary.mce_note if summary.mce is None else None),
                       ("relative mCE", summary.relative_note if summary.mce is not None else None)):
        if note and note != "no normaliser":
            log.warning("%s not computed: %s", what, note)
    common = {"corruptions": summary.corruptions, "severities": summary.severities}
    notes = {k: v for k, v in (("mCE_note", summary.mce_note), ("relative_mCE_note", summary.relative_note)) if v}
    out = [Cell(f"{SUITE}/mean_corruption_accuracy", SUITE, "mean_corruption_accuracy",
                summary.mean_corruption_accuracy, n=n, details={**common, **notes, "note": "mean top-1 "
                "accuracy over (corruption, severity) cells; not mCE"}),
           Cell(f"{SUITE}/unnormalized_mCE", SUITE, "unnormalized_mCE", summary.unnormalized_mce,
                details={**common, "unit": "percent", "unnormalized_ce": summary.unnormalized_ce,
                         "note": "Hendrycks's ImageNet-C test script: 100 · mean over every corruption present "
                                 "(extras included) of its mean error over severities; not normalised"})]
    norm = {"normalizer": summary.normalizer, "unit": "percent"}
    for c in summary.extras:
        if c in summary.extra_ce:
            out.append(Cell(f"{SUITE}/CE/{c}", SUITE, "CE", summary.extra_ce[c],
                            details={**norm, "corruption": c, "extra": True, "in_mCE": False}))
        else:
            out.append(Cell(f"{SUITE}/unnormalized_CE/{c}", SUITE, "unnormalized_CE", summary.unnormalized_ce[c],
                            details={"unit": "percent", "corruption": c, "extra": True, "in_mCE": False,
                                     "note": "no reference errors for this extra corruption"}))
    if summary.mce is None:
        return out
    bench = {"corruptions": summary.benchmark, "severities": summary.severities, "excluded_extras": summary.extras}
    out.append(Cell(f"{SUITE}/mCE", SUITE, "mCE", summary.mce, details={**bench, **norm, **notes, "ce": summary.ce}))
    out += [Cell(f"{SUITE}/CE/{c}", SUITE, "CE", v, details={**norm, "corruption": c}) for c, v in summary.ce.items()]
    if summary.relative_mce is not None:
        out.append(Cell(f"{SUITE}/relative_mCE", SUITE, "relative_mCE", summary.relative_mce,
                        details={**bench, **norm, "relative_ce": summary.relative_ce, "clean_error": clean}))
    return out


# ----------------------------------------------------------------------------- ImageNet-A / R


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: Dataset, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    from robustune.attacks import eval_mode
    from robustune.data import build_loader

    logits, labels = [], []
    with eval_mode(model):
        for x, y in build_loader(dataset, batch_size):
            logits.append(model(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y))
    return torch.cat(logits), torch.cat(labels)


def _subset_suite(name: str):
    option = f"{name.replace('-', '_')}_root"

    def suite(ctx: EvalContext):
        root = ctx.options.get(option)
        if not root:
            raise ValueError(f"the {name} suite needs --option {option}=DIR (the 200 wnid folders)")

        def compute() -> Cell:
            from robustune.data import create_dataset

            ds = create_dataset(name, root=root, transform=model_input_options(ctx.model)["transform"])
            logits, y = predict_logits(ctx.model, ds, ctx.batch_size, ctx.device)
            correct = cm.subset_top1_correct(logits, y, imagenet_subset_indices(name))
            save_per_sample(ctx.out_dir, name, correct=correct, label=y)
            return Cell.from_outcomes(name, name, "top1_accuracy", correct, masked_to_classes=200,
                                      head_classes=int(logits.shape[1]), root=str(root))

        yield name, compute

    suite.__name__ = name.replace("-", "_")
    return suite


register_suite("imagenet-a")(_subset_suite("imagenet-a"))
register_suite("imagenet-r")(_subset_suite("imagenet-r"))


# ----------------------------------------------------------------------------- ImageNet-P


@torch.no_grad()
def sequence_logits(model: nn.Module, frames: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    size = _input_size(model)
    out = []
    for chunk in frames.split(batch_size):
        chunk = chunk.to(device)
        if size and (chunk.shape[-1] != size or chunk.shape[-2] != size):
            chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(model(chunk).float().cpu())
    return torch.cat(out)


def perturbation_cell(model: nn.Module, seqs: Dataset, perturbation: str, device, batch_size: int,
                      max_sequences: int | None = None, difficulty: int = 1) -> Cell:
    """Flip probability (and top-5 distance) of one ImageNet-P perturbation at ``difficulty``."""
    from robustune.attacks import eval_mode

    noise = cm.is_noise_perturbation(perturbation)
    folder, step = cm.perturbation_source(perturbation, difficulty)
    fps, t5ds = [], []
    with eval_mode(model):
        for i in range(min(len(seqs), max_sequences or len(seqs))):
            logits = sequence_logits(model, seqs[i][0], device, batch_size).numpy()
            fps.append(cm.flip_probability(logits.argmax(1)[None], noise, step))
            t5ds.append(cm.top5_distance(logits[None], noise, step))
    key = f"imagenet-p/{perturbation}" + (f"/difficulty={difficulty}" if difficulty > 1 else "")
    return Cell(key, "imagenet-p", "flip_probability", float(np.mean(fps)), n=len(fps),
                details={"perturbation": perturbation, "noise_rule": noise, "difficulty": difficulty,
                         "folder": folder, "step": step, "top5_distance": float(np.mean(t5ds))})


def _p_reference(options: Mapping[str, Any], difficulty: int = 1
                 ) -> tuple[dict[str, float] | None, dict[str, float] | None, str | None]:
    ref = options.get("imagenet_p_reference")
    if ref is None:
        return None, None, None
    if isinstance(ref, Mapping):
        return dict(ref), dict(options.get("imagenet_p_reference_t5d") or {}), "user-supplied flip probabilities"
    res = load_results(ref)
    fp, t5d = _p_values(res, difficulty)
    return fp, t5d, f"reference model: {model_label(res, str(ref))}"


@register_suite("imagenet-p")
def imagenet_p_suite(ctx: EvalContext):
    root = ctx.options.get("imagenet_p_root")
    if not root:
        raise ValueError("the imagenet-p suite needs --option imagenet_p_root=DIR (<perturbation>/<wnid>/<seq>.mp4)")
    difficulty = int(ctx.options.get("imagenet_p_difficulty", 1))
    cm.perturbation_source("", difficulty)  # validates the difficulty before any work
    present = [p for p in cm.PERTURBATIONS if (Path(root) / cm.perturbation_source(p, difficulty)[0]).is_dir()]
    wanted = _listify(ctx.options.get("perturbations")) or present
    for p in wanted:
        def compute(p: str = p) -> Cell:
            folder = cm.perturbation_source(p, difficulty)[0]
            return perturbation_cell(ctx.model, PerturbationSequences(root, folder), p, ctx.device,
                                     ctx.batch_size, ctx.options.get("max_sequences"), difficulty)

        yield f"imagenet-p/{p}" + (f"/difficulty={difficulty}" if difficulty > 1 else ""), compute

    tag = f"/difficulty={difficulty}" if difficulty > 1 else ""

    def summary() -> list[Cell]:
        """mFR / mT5D over the benchmark perturbations of this difficulty (extras have their own FP)."""
        fp, t5d = _p_values(ctx.results, difficulty)
        fp = {p: v for p, v in fp.items() if p not in cm.EXTRA_PERTURBATIONS}
        ref_fp, ref_t5d, name = _p_reference(ctx.options, difficulty)
        s = cm.summarize_perturbations(fp, t5d, ref_fp, ref_t5d, name)
        out = []
        common = {"normalizer": name, "unit": "percent", "difficulty": difficulty}
        if s.mfr is not None:
            out.append(Cell(f"imagenet-p/mFR{tag}", "imagenet-p", "mFR", s.mfr,
                            details={**common, "flip_rate": s.flip_rate}))
        if s.mt5d is not None:
            out.append(Cell(f"imagenet-p/mT5D{tag}", "imagenet-p", "mT5D", s.mt5d,
                            details={**common, "top5_rate": s.top5_rate}))
        return out

    yield f"imagenet-p/summary{tag}", summary


def _p_values(results: EvalResults, difficulty: int) -> tuple[dict[str, float], dict[str, float]]:
    """perturbation → flip probability and → top-5 distance, from the cells of one difficulty."""
    cells = [c for c in results.cells.values() if c.suite == "imagenet-p" and c.metric == "flip_probability"
             and c.details.get("difficulty", 1) == difficulty]
    return ({c.details["perturbation"]: c.value for c in cells},
            {c.details["perturbation"]: c.details["top5_distance"] for c in cells})
