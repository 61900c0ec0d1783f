"""Configuration: the inventory, the agent file and the collector file, validated whole.

Load with `load_inventory`, `load_agent_config` or `load_collector_config`; each returns frozen
records (see `sitewatch.config.model`) or raises `ConfigError` carrying every problem found,
each with its file, line and YAML path.
"""

from sitewatch.config.errors import ConfigError, Problem
from sitewatch.config.files import (
    CheckedFile,
    Kind,
    check_files,
    load_agent_config,
    load_collector_config,
    load_inventory,
)

__all__ = [
    "CheckedFile",
    "ConfigError",
    "Kind",
    "Problem",
    "check_files",
    "load_agent_config",
    "load_collector_config",
    "load_inventory",
]
