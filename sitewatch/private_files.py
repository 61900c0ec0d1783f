"""Files that only their owner (and perhaps its group) may read, whatever the umask.

The collector's database (0640: backups and reports run as its group), the agent's outbox and
its cached plan (0600: results, and the SNMP credentials a plan holds) are created with their
mode set explicitly. `os.open`'s mode is filtered through the umask of whoever started the
process, so a file created with it may lack bits; it is put right with `fchmod` on the open file
descriptor, before anything is written and without a moment when the path names a file with
other bits. SQLite gives the -wal and -shm files it makes beside a database the database's mode.
"""

from __future__ import annotations

import os
from pathlib import Path


def create_private(path: Path, mode: int) -> None:
    """Create `path` empty with exactly `mode`; leave a file that exists as it is.

    A file that is there already keeps the mode its administrator gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)  # the umask took bits off at creation: put them back
    finally:
        os.close(fd)


def replace_private(path: Path, text: str, mode: int) -> None:
    """Replace `path` with `text` atomically (write, fsync, rename), the new file with `mode`.

    A crash leaves the old file or the new one, never half of one. The scratch file beside it
    is made afresh each time, so one left by a crash with other bits gets `mode` too.
    """
    scratch = path.with_name(path.name + ".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, mode)
        file.write(text)
        file.flush()
        os.fsync(fd)
    scratch.replace(path)
