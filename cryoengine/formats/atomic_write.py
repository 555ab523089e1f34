"""Atomic file writes: write beside the target under a temporary name, then rename over it.

A killed job or a full disk therefore never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``.

    The temporary name keeps the target's suffixes (``out.mrc`` → ``.out.mrc.<random>.tmp.mrc``) so that
    libraries which choose a format by suffix still work. On any exception the temporary file is removed
    and ``target`` is left as it was.

    Parameters
    ----------
    target
        Final path. Its parent directory is created if missing.

    Yields
    ------
    Path
        Where to write.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; a finished file gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as error:
        if error.filename is None and error.errno is not None:  # e.g. ENOSPC: say which file failed
            error.filename = str(target)
        raise
    finally:
        tmp.unlink(missing_ok=True)
