"""Folders of this user's alone, in a temporary folder that no other user can change.

The CV pool's socket (whatever answers on it is trusted with the jobs' pickles) and the metrics'
files live in such folders. A folder made 0700 is not enough when another user may rename it, or
a folder above it, and put their own in its place: with ``TMPDIR`` set to a folder anyone may
write to (not sticky, as ``/tmp`` is), or one another user owns. Standard library only: the
gunicorn settings use it before the app is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile

log = logging.getLogger(__name__)


def private_folder(prefix: str) -> str:
    """A new folder of this user's alone (0700) in ``$TMPDIR`` when it is kept from other users, else in
    ``/tmp`` or ``/var/tmp``; ``PermissionError`` when none is."""
    wanted = tempfile.gettempdir()
    for base in dict.fromkeys([wanted, "/tmp", "/var/tmp"]):
        if kept_from_others(base):
            if base != wanted:
                log.warning("the temporary folder %s may be changed by other users; %s goes in %s",
                            wanted, prefix.strip("-"), base)
            return tempfile.mkdtemp(prefix=prefix, dir=os.path.realpath(base))
    raise PermissionError(f"no temporary folder that other users cannot change ({wanted}, /tmp, /var/tmp): "
                          "set TMPDIR to a folder only this user and root can write")


def kept_from_others(folder: str) -> bool:
    """Whether only this user and root can rename, remove or replace ``folder`` or any folder above it (symlinks
    resolved): each belongs to one of them and is writable by no one else, or is sticky as ``/tmp`` is."""
    path, mine = os.path.realpath(folder), (0, os.getuid())
    while True:
        try:
            info = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in mine:
            return False
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def check_private(folder: str) -> None:
    """Raise ``PermissionError`` unless ``folder`` (a path without symlinks: see ``metrics_dir``) is a folder of
    this user's (or root's) that no one else may write in, under folders only this user and root can change:
    a folder an operator names for such files."""
    _check(folder, (0, os.getuid()), 0o022)


def own_folder(folder: str) -> None:
    """Make sure ``folder`` is this user's alone (made again, 0700, if it has gone) under folders only this
    user and root can change, else raise ``PermissionError``: a folder this process made and uses again."""
    if not kept_from_others(os.path.dirname(folder)):  # before making anything there
        raise PermissionError(f"{folder} may be changed by other users (a folder above it): it is not used")
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    _check(folder, (os.getuid(),), 0o077)


def _check(folder: str, owners: tuple[int, ...], others: int) -> None:
    info = os.lstat(folder)
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners or info.st_mode & others
            or not kept_from_others(os.path.dirname(folder))):
        raise PermissionError(f"{folder} may be changed by other users (its owner, its mode, or a folder above it): "
                              "use a folder only this user and root can write")
