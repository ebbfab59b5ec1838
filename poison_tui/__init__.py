"""poison-tui: the analyst's terminal front end (CLI and Textual app) over ``engine``."""

from engine import __version__

__all__ = ["__version__"]
