"""Prompt templates: CoOp's one template per dataset, and template ensembles for zero-shot CLIP.

The per-dataset templates are CoOp's (Zhou et al., IJCV 2022), which FAP and ER-APT use
(spec ``erapt.md`` §6). ``{}`` is the class name.
"""

from __future__ import annotations

import re

DEFAULT_TEMPLATE = "a photo of a {}."

# Keys are normalised dataset names (lower case, letters and digits only).
COOP_TEMPLATES: dict[str, str] = {
    "oxfordpets": "a photo of a {}, a type of pet.",
    "oxfordflowers": "a photo of a {}, a type of flower.",
    "fgvcaircraft": "a photo of a {}, a type of aircraft.",
    "describabletextures": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanfordcars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet": "a photo of a {}.",
    "digits": "a photo of the digit {}.",
    "digitspairs": "a photo of the number {}.",  # ours: classes "00".."99" (robustune.data.digits_pairs)
}

ALIASES: dict[str, str] = {
    "pets": "oxfordpets",
    "flowers": "oxfordflowers",
    "flowers102": "oxfordflowers",
    "oxfordflowers102": "oxfordflowers",
    "aircraft": "fgvcaircraft",
    "dtd": "describabletextures",
    "cars": "stanfordcars",
    "food": "food101",
    "sun": "sun397",
    "caltech": "caltech101",
    "ucf": "ucf101",
}

# Caption templates of the tiny CLIP's pre-training and the digits zero-shot ensemble.
DIGIT_TEMPLATES: list[str] = [
    "a photo of the digit {}.",
    "a handwritten {}.",
    "the number {}.",
    "a blurry picture of the digit {}.",
    "an image of a {}.",
]

# Caption templates of the tiny CLIP's pre-training on digits_pairs and its zero-shot ensemble (ours).
PAIR_TEMPLATES: list[str] = [
    "a photo of the number {}.",
    "a handwritten {}.",
    "the number {}.",
    "a blurry picture of the number {}.",
    "an image of a {}.",
]

# A short general-purpose ensemble (a subset of CLIP's ImageNet prompts).
GENERIC_ENSEMBLE: list[str] = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a low resolution photo of a {}.",
    "itap of a {}.",
]

ENSEMBLES: dict[str, list[str]] = {"digits": DIGIT_TEMPLATES, "digitspairs": PAIR_TEMPLATES,
                                   "generic": GENERIC_ENSEMBLE}


def _key(dataset: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", dataset.lower())
    for prefix in ("coop", "fewshot"):
        key = key.removeprefix(prefix)
    return ALIASES.get(key, key)


def dataset_template(dataset: str) -> str:
    """CoOp's template for ``dataset`` (any spelling: ``OxfordPets``, ``oxford_pets``, ``pets``)."""
    return COOP_TEMPLATES.get(_key(dataset), DEFAULT_TEMPLATE)


def resolve_templates(spec: str | list[str] | None, dataset: str) -> list[str]:
    """Templates from a config value.

    ``None`` or ``"dataset"``: the dataset's CoOp template; ``"ensemble"``: the dataset's ensemble
    (digits, digits_pairs) or the generic one; a named ensemble; a literal template with ``{}``; or a list.
    """
    if spec is None or spec == "dataset":
        return [dataset_template(dataset)]
    if isinstance(spec, list):
        templates = list(spec)
    elif spec == "ensemble":
        templates = ENSEMBLES.get(_key(dataset), GENERIC_ENSEMBLE)
    elif spec in ENSEMBLES:
        templates = ENSEMBLES[spec]
    else:
        templates = [spec]
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"template {bad[0]!r} has no '{{}}' for the class name; valid names: "
                         f"dataset, ensemble, {', '.join(ENSEMBLES)} or a template like 'a photo of a {{}}.'")
    return templates


def fill(template: str, classname: str) -> str:
    return template.format(classname.replace("_", " "))
