"""CLIP via open_clip: zero-shot classifiers, prompt learners, the tiny CLIP and templates.

Spec ``erapt.md`` §1, §5, §6. Importing this package does not import open_clip; the factories do.
The prompt-tuning methods live in :mod:`robustune.methods.prompt_tuning`.
"""

from robustune.clip.models import CLIPBundle, create_clip, is_clip_name, list_clip_models
from robustune.clip.prompted import PromptedCLIP
from robustune.clip.prompts import PROMPT_LEARNERS, PromptLearner, Prompts, create_prompt_learner, prompted
from robustune.clip.templates import dataset_template, resolve_templates
from robustune.clip.zeroshot import CLIPClassifier, create_clip_classifier

__all__ = [
    "CLIPBundle", "CLIPClassifier", "PROMPT_LEARNERS", "PromptLearner", "PromptedCLIP", "Prompts",
    "create_clip", "create_clip_classifier", "create_prompt_learner", "dataset_template", "is_clip_name",
    "list_clip_models", "prompted", "resolve_templates",
]
