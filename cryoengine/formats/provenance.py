"""Provenance stamped on every output: package version, git commit, time, command line, config, seed."""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryoengine import __version__

__all__ = ["provenance", "record_invocation"]

# What started this process, when the command line does not say it (a Snakemake script adapter).
_invocation: list[str] | None = None


def record_invocation(argv: list[str]) -> None:
    """Record what started this process, for ``provenance()['argv']`` instead of ``sys.argv``.

    Snakemake runs a rule's script from a temporary copy, so ``sys.argv`` names that file; the workflow's
    adapters record ``["snakemake", "rule", <rule>, <wildcard>=<value>, ...]`` instead.
    """
    global _invocation
    _invocation = [str(part) for part in argv]


@functools.cache
def _git_commit() -> str:
    """Commit of the source tree this package runs from, or ``"unknown"`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def provenance(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Return a JSON-serialisable provenance record for an output.

    Parameters
    ----------
    config
        The (already validated) configuration that produced the output, as plain data.
    seed
        The seed from which the output's randomness flowed, if any.

    Returns
    -------
    dict
        Keys ``package``, ``version``, ``git_commit``, ``created_utc``, ``argv``, ``python``, ``config``,
        ``seed``.
    """
    return {
        "package": "cryoet-foundation",
        "version": __version__,
        "git_commit": _git_commit(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "argv": list(sys.argv) if _invocation is None else list(_invocation),
        "python": platform.python_version(),
        "config": config,
        "seed": seed,
    }
