"""What a run reads from disk: a fingerprint of a file's bytes (a resume refuses inputs changed since) and a
cheap stamp of files (the key of a per-process cache, so that files written since are read again)."""

import hashlib
from pathlib import Path


def file_stamps(*paths: Path) -> tuple[tuple[int, int], ...]:
    """Modification time (ns) and size of each file, ``()`` if one is missing: the key of a per-process cache of
    what the files hold, so that files written since are read again."""
    try:
        return tuple((path.stat().st_mtime_ns, path.stat().st_size) for path in paths)
    except OSError:
        return ()


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
