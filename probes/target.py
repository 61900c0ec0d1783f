"""What a probe is pointed at: an address, the inventory id it stands for, and its options.

The options are the inventory's own probe specs (`sitewatch.config.model`), so a plan read from
the inventory runs as it is and `sitewatch probe` builds the same records from its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sitewatch.config.model import ProbeSpec


@dataclass(frozen=True, slots=True)
class HostProbe:
    """The agent machine's own health; `path` is the disk (state directory) to watch."""

    path: Path = Path("/")
    kind: Literal["host"] = "host"


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to probe."""

    address: str  # IP address, host name or URL, as the probe kind expects
    spec: ProbeSpec | HostProbe
    id: str = ""  # the inventory id; results name this, or the address when empty

    @property
    def name(self) -> str:
        """Return what results call this target."""
        return self.id or self.address
