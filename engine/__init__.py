"""poison-tui engine: ingestion, EK-FAC influence, detection and governance. No UI imports."""

__version__ = "0.1.0"
