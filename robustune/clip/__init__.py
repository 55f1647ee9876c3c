"""CLIP via open_clip: zero-shot classifiers, prompt learners, the tiny CLIP and prompt-tuning methods.

Spec ``erapt.md`` §1, §2, §5, §6. Importing this package does not import open_clip; the factories do.
"""

# robustune.methods registers this package's methods (and ER-APT builds on them): initialise it
# first, so that importing any robustune.clip module first cannot meet a half-built registry.
import robustune.methods  # noqa: F401,I001

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
