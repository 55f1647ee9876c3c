"""The CoOp few-shot datasets: the 10 fine-grained / scene / texture sets and ImageNet.

Layouts follow CoOp's ``DATASETS.md`` (Zhou et al., "Learning to Prompt for Vision-Language
Models", IJCV 2022), which FAP and ER-APT reuse. ``data.root`` is either the folder that holds all
datasets (``root/caltech-101/...``) or one dataset's own folder.

Splits come from CoOp's ``split_zhou_<Name>.json`` (``{"train"|"val"|"test": [[relative path,
label, classname], ...]}``, paths relative to the image folder). Quirks:

- Caltech101 drops ``BACKGROUND_Google`` and ``Faces_easy`` (also if a split file lists them);
- FGVC-Aircraft has no split file: ``variants.txt`` names the classes and
  ``images_variant_{train,val,test}.txt`` (``<image id> <variant name>``) are the splits;
- ImageNet has no split file: ``images/{train,val}/<wnid>/*`` with ``classnames.txt``
  (``<wnid> <name>`` per line); its ``val`` folder is the test split and it has no val split;
- DTD, EuroSAT, Caltech101 and Food101 without a split file are split from their class folders
  like CoOp's ``read_and_split_data`` (50 % train / 20 % val / 30 % test per class), seeded with 0.

Every dataset exposes ``classes`` (CoOp class names with ``_`` read as a space, for CLIP prompts),
``targets`` and ``template`` (CoOp's per-dataset prompt template, spec §6).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from robustune.data.folder import IMG_EXTENSIONS, ImageFolderDataset, MissingSplitError  # noqa: F401 (re-export)
from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {}."
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CoOpSpec:
    """Where one CoOp dataset lives on disk and how it is prompted."""

    registry_name: str
    coop_name: str  # the class name in CoOp's code and in split_zhou_<coop_name>.json
    folder: str  # the dataset's folder under the common data root
    image_dir: str  # image folder inside ``folder`` ("" = the folder itself)
    template: str = DEFAULT_TEMPLATE
    ignored: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    folder_split: bool = False  # may be split from class folders when the split file is missing

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.coop_name}.json"


EUROSAT_NAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings",
    "River": "River", "SeaLake": "Sea or Lake",
}
CALTECH_NAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard",
                 "Motorbikes": "motorbike"}

SPECS: dict[str, CoOpSpec] = {s.registry_name: s for s in [
    CoOpSpec("caltech101", "Caltech101", "caltech-101", "101_ObjectCategories",
             ignored=("BACKGROUND_Google", "Faces_easy"), renamed=CALTECH_NAMES, folder_split=True),
    CoOpSpec("dtd", "DescribableTextures", "dtd", "images", "{} texture.", folder_split=True),
    CoOpSpec("eurosat", "EuroSAT", "eurosat", "2750", "a centered satellite photo of {}.",
             renamed=EUROSAT_NAMES, folder_split=True),
    CoOpSpec("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft", "images",
             "a photo of a {}, a type of aircraft."),
    CoOpSpec("food101", "Food101", "food-101", "images", "a photo of {}, a type of food.",
             folder_split=True),
    CoOpSpec("oxford_flowers", "OxfordFlowers", "oxford_flowers", "jpg",
             "a photo of a {}, a type of flower."),
    CoOpSpec("oxford_pets", "OxfordPets", "oxford_pets", "images", "a photo of a {}, a type of pet."),
    CoOpSpec("stanford_cars", "StanfordCars", "stanford_cars", ""),
    CoOpSpec("sun397", "SUN397", "sun397", "SUN397"),
    CoOpSpec("ucf101", "UCF101", "ucf101", "UCF-101-midframes", "a photo of a person doing {}."),
    CoOpSpec("fewshot_imagenet", "ImageNet", "imagenet", "images"),
]}

Items = list[tuple[str, int, str]]


  # (absolute image path, label, class name)


class LabelledFiles(ImageFolderDataset):
    """Image files with labels and class names (from a split file); robust loading as ``folder``."""

    def __init__(self, items: Items, classes: list[str], root: Path, transform: Callable | None = None,
                 verify: bool = False, template: str = DEFAULT_TEMPLATE) -> None:
        self.root = Path(root)
        self.classes = list(classes)
        self.folders = list(classes)
        self.transform = transform
        self.template = template
        present = [(p, y) for p, y, _ in items if os.path.isfile(p)]
        if len(present) < len(items):
            missing = next(p for p, _, _ in items if not os.path.isfile(p))
            log.warning("%d of %d listed image file(s) are missing under %s (first: %s)",
                        len(items) - len(present), len(items), root, missing)
        self.skipped = []
        samples = self._drop_unreadable(present) if verify else present
        if not samples:
            raise FileNotFoundError(f"no readable images of this split under {str(root)!r}")
        self.samples = samples
        self.targets = [y for _, y in samples]
        self._warned = False


def dataset_dir(spec: CoOpSpec, root: str | os.PathLike | None) -> Path:
    """``root/<folder>`` if it exists, else ``root`` itself (pointing at the dataset's folder)."""
    if root is None:
        raise ValueError(f"{spec.registry_name} needs data.root: the folder holding "
                         f"{spec.folder}/ (CoOp layout, see docs/fewshot.md)")
    base = Path(root).expanduser()
    path = base / spec.folder
    path = path if path.is_dir() else base
    if not path.is_dir():
        raise FileNotFoundError(f"{spec.registry_name}: dataset folder {str(path)!r} does not exist")
    return path


def class_names_from_items(items: Items) -> list[str]:
    """Class names in label order; errors if labels are not 0..n-1 or a label has two names."""
    names: dict[int, str] = {}
    for _, y, c in items:
        if names.setdefault(y, c) != c:
            raise ValueError(f"label {y} has two class names: {names[y]!r} and {c!r}")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"labels must be 0..{len(names) - 1}; got {sorted(names)[:10]} ...")
    return [names[i] for i in range(len(names))]


def drop_classes(items_by_split: dict[str, Items], ignored: tuple[str, ...]) -> dict[str, Items]:
    """Remove classes named in ``ignored`` (by class name or folder name) and relabel 0..n-1."""
    if not ignored:
        return items_by_split

    def is_ignored(path: str, name: str) -> bool:
        return name in ignored or Path(path).parent.name in ignored

    kept = sorted({y for items in items_by_split.values() for p, y, c in items if not is_ignored(p, c)})
    remap = {y: i for i, y in enumerate(kept)}
    return {s: [(p, remap[y], c) for p, y, c in items if not is_ignored(p, c)]
            for s, items in items_by_split.items()}


def read_split_file(path: str | os.PathLike, image_dir: str | os.PathLike) -> dict[str, Items]:
    """Read a CoOp ``split_zhou_<Name>.json``; paths are joined to ``image_dir``."""
    data = json.loads(Path(path).read_text())
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise ValueError(f"{path}: split file has no {missing} list(s); expected train, val, test")
    return {s: [(str(Path(image_dir) / rel), int(y), str(c)) for rel, y, c in data[s]] for s in SPLITS}


def split_class_folders(image_dir: Path, ignored: tuple[str, ...] = (), renamed: dict[str, str] | None = None,
                        p_train: float = 0.5, p_val: float = 0.2, seed: int = 0) -> dict[str, Items]:
    """CoOp's ``read_and_split_data``: per class folder, shuffle and cut train / val / test."""
    renamed = renamed or {}
    rng = random.Random(seed)
    folders = sorted(e.name for e in os.scandir(image_dir)
                     if e.is_dir() and not e.name.startswith(".") and e.name not in ignored)
    if not folders:
        raise FileNotFoundError(f"no class folders under {str(image_dir)!r}")
    out: dict[str, Items] = {s: [] for s in SPLITS}
    for label, folder in enumerate(folders):
        files = sorted(str(p) for p in (image_dir / folder).iterdir()
                       if p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith("."))
        rng.shuffle(files)
        n_train, n_val = round(len(files) * p_train), round(len(files) * p_val)
        if min(n_train, n_val, len(files) - n_train - n_val) <= 0:
            raise ValueError(f"class folder {folder!r} has too few images ({len(files)}) to split "
                             "into train / val / test; provide the CoOp split file instead")
        name = renamed.get(folder, folder)
        cuts = {"train": files[:n_train], "val": files[n_train:n_train + n_val],
                "test": files[n_train + n_val:]}
        for split, paths in cuts.items():
            out[split].extend((p, label, name) for p in paths)
    return out


def read_fgvc_aircraft(ddir: Path, image_dir: Path) -> dict[str, Items]:
    """FGVC-Aircraft: classes from ``variants.txt``, splits from ``images_variant_<split>.txt``."""
    variants = ddir / "variants.txt"
    if not variants.is_file():
        raise FileNotFoundError(f"fgvc_aircraft: {str(variants)!r} not found (the dataset's data/ folder)")
    classes = [ln.strip() for ln in variants.read_text().splitlines() if ln.strip()]
    label_of = {c: i for i, c in enumerate(classes)}
    out: dict[str, Items] = {}
    for split in SPLITS:
        items = []
        for line in (ddir / f"images_variant_{split}.txt").read_text().splitlines():
            if not line.strip():
                continue
            image_id, variant = line.strip().split(" ", 1)
            if variant not in label_of:
                raise ValueError(f"fgvc_aircraft: variant {variant!r} of image {image_id} "
                                 "is not in variants.txt")
            items.append((str(image_dir / f"{image_id}.jpg"), label_of[variant], variant))
        out[split] = items
    return out


def read_imagenet(ddir: Path, image_dir: Path) -> tuple[dict[str, Items], list[str]]:
    """ImageNet as CoOp: ``images/{train,val}/<wnid>/*`` and ``classnames.txt`` (wnid → name)."""
    names_file = ddir / "classnames.txt"
    if not names_file.is_file():
        raise FileNotFoundError(f"fewshot_imagenet: {str(names_file)!r} not found "
                                "(lines '<wnid> <class name>', from CoOp's DATASETS.md)")
    name_of = dict(ln.strip().split(" ", 1) for ln in names_file.read_text().splitlines() if ln.strip())
    image_dir = image_dir if (image_dir / "train").is_dir() else ddir
    wnids = sorted(e.name for e in os.scandir(image_dir / "train") if e.is_dir())
    unnamed = [w for w in wnids if w not in name_of]
    if unnamed:
        raise ValueError(f"fewshot_imagenet: {len(unnamed)} wnid folder(s) not in classnames.txt, "
                         f"e.g. {unnamed[0]}")
    out: dict[str, Items] = {"val": []}
    for split, folder in (("train", "train"), ("test", "val")):
        items = []
        for label, wnid in enumerate(wnids):
            sub = image_dir / folder / wnid
            files = sorted(str(p) for p in sub.iterdir()
                           if p.suffix.lower() in IMG_EXTENSIONS) if sub.is_dir() else []
            items.extend((f, label, name_of[wnid]) for f in files)
        out[split] = items
    return out, [name_of[w] for w in wnids]


def read_coop_items(spec: CoOpSpec, root: str | os.PathLike | None
                    ) -> tuple[dict[str, Items], list[str], Path]:
    """All splits of one CoOp dataset as (path, label, class name) items, with the class names."""
    ddir = dataset_dir(spec, root)
    image_dir = ddir / spec.image_dir if spec.image_dir else ddir
    if spec.registry_name == "fewshot_imagenet":
        items, classes = read_imagenet(ddir, image_dir)
        return items, classes, ddir
    if spec.registry_name == "fgvc_aircraft":
        items = read_fgvc_aircraft(ddir, image_dir)
    elif (ddir / spec.split_file).is_file():
        items = read_split_file(ddir / spec.split_file, image_dir)
    elif spec.folder_split and image_dir.is_dir():
        log.warning("%s: no %s in %s; splitting the class folders 50/20/30 (seed 0) like CoOp",
                    spec.registry_name, spec.split_file, ddir)
        items = split_class_folders(image_dir, spec.ignored, spec.renamed)
    else:
        raise FileNotFoundError(f"{spec.registry_name}: split file {str(ddir / spec.split_file)!r} "
                                "not found; "
                                "download it from CoOp's DATASETS.md (see docs/fewshot.md)")
    items = drop_classes(items, spec.ignored)
    return items, class_names_from_items(items["train"] + items["val"] + items["test"]), ddir


@functools.lru_cache(maxsize=8)
def _read_coop_items_memo(name: str, root: str | None) -> tuple[dict[str, Items], list[str], Path]:
    # One run builds its splits several times (classes, train, val, test, each evaluation); listing
    # ImageNet's 1.28 M files once per process is enough. Callers never mutate the items.
    return read_coop_items(SPECS[name], root)


def create_coop_dataset(name: str, split: str = "train", root: str | None = None, transform=None,
                        verify: bool = False, **_: Any) -> Dataset:
    """One split of CoOp dataset ``name`` (a key of :data:`SPECS`)."""
    spec = SPECS[name]
    if split not in SPLITS:
        raise ValueError(f"unknown {name} split {split!r}; valid: {', '.join(SPLITS)}")
    where = str(Path(root).expanduser().resolve()) if root else None
    items, classes, ddir = _read_coop_items_memo(name, where)
    if not items[split]:
        raise MissingSplitError(f"{name} has no {split!r} split (ImageNet: sample val from train, "
                         "as the few-shot protocol does)")
    readable = [c.replace("_", " ") for c in classes]
    return LabelledFiles(items[split], readable, ddir, transform=transform, verify=verify,
                         template=spec.template)


def _register(name: str) -> None:
    def factory(split: str = "train", **kwargs: Any) -> Dataset:
        return create_coop_dataset(name, split, **kwargs)

    factory.__doc__ = f"CoOp's {SPECS[name].coop_name} (layout in docs/fewshot.md)."
    sig = inspect.signature(create_coop_dataset)  # its options, for data.options checks
    factory.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "name"])
    register_dataset(name)(factory)


for _name in SPECS:
    _register(_name)
