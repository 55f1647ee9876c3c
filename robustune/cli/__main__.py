"""``python -m robustune.cli`` (used by torchrun)."""

from robustune.cli import main

main()
