"""The report: the paper's tables and figures from a spec's MLflow runs (`ltspec report`)."""

from ltspec.report.write import write_report

__all__ = ["write_report"]
