"""Reports built from results.json files (data in, Markdown/HTML/PNG out)."""

from robustune.report.robustness import write_report  # noqa: E402

__all__ = ["write_report"]
