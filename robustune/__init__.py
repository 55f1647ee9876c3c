"""robustune: make pre-trained vision models and CLIP robust, and measure how robust they are.

Public API (library first; the ``robustune`` CLI is a thin layer over these):

- :func:`robustune.models.create_classifier`, :func:`robustune.models.list_models`
- :func:`robustune.data.create_dataset`, :func:`robustune.data.list_datasets`
- :func:`robustune.methods.create_method`, :func:`robustune.methods.list_methods`
- :func:`robustune.attacks.create_attack`, :func:`robustune.attacks.list_attacks`
- :func:`robustune.engine.train`, :func:`robustune.eval.evaluate`
"""

__version__ = "0.1.0"
