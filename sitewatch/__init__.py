"""SiteWatch: network and endpoint monitoring with automatic incidents for municipalities."""

__version__ = "0.1.0"
