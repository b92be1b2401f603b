"""Resumable, chunked results of ``skfungi extract``, and atomic file writes.

An extraction writing ``OUTPUT`` keeps its partial results in the folder
``OUTPUT.parts/``: a ``manifest.json`` recording the settings that determine
the features, and one ``chunk-NNNNNN.npz`` per finished chunk of samples.
Every file is written to a temporary name and renamed into place, so a file
under its final name is always complete: an interrupted run leaves finished
chunks and nothing half-written, and a rerun with the same settings picks up
the chunks that are missing. A rerun with other settings is refused (the
chunks would not belong together).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["ChunkStore", "ResumeError", "atomic_write"]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ResumeError(ValueError):
    """Partial results exist that cannot be resumed with the given settings."""


def atomic_write(path: Path, write: Callable) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on POSIX and Windows file systems: ``path`` either
    keeps its old content or holds the complete new one. The temporary file is
    removed if ``write`` fails.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


class ChunkStore:
    """The partial results of one extraction: a manifest and finished chunks.

    Parameters
    ----------
    directory : Path
        The ``OUTPUT.parts`` folder.
    manifest : dict
        ``{"format": ..., "settings": {...}, "n_samples": ..., "chunk_size": ..., ...}``.
    """

    def __init__(self, directory: Path, manifest: dict):
        self.directory = Path(directory)
        self.manifest = manifest

    @classmethod
    def open(cls, directory, settings: dict, n_samples: int, chunk_size: int, restart: bool = False) -> ChunkStore:
        """Resume the partial results in ``directory`` or start new ones.

        Raises
        ------
        ResumeError
            If ``directory`` holds results of other settings (unless
            ``restart``), or is not a partial-results folder.
        """
        directory = Path(directory)
        manifest = {"format": FORMAT_VERSION, "settings": settings, "n_samples": n_samples, "chunk_size": chunk_size}
        if directory.exists():
            stored = _read_manifest(directory)
            if restart:
                shutil.rmtree(directory)
            else:
                differences = _differences(stored, manifest)
                if differences:
                    raise ResumeError(
                        f"{os.fspath(directory)!r} holds a partial extraction made with other settings "
                        f"({'; '.join(differences)}): rerun with the same settings to resume it, or pass "
                        "--restart to discard it."
                    )
                return cls(directory, stored)
        directory.mkdir()
        store = cls(directory, manifest)
        store._save_manifest()
        return store

    @property
    def n_chunks(self) -> int:
        return -(-self.manifest["n_samples"] // self.manifest["chunk_size"])

    def chunk_range(self, chunk: int) -> range:
        size = self.manifest["chunk_size"]
        return range(chunk * size, min((chunk + 1) * size, self.manifest["n_samples"]))

    def pending(self) -> list[int]:
        """Chunks not finished yet, in order."""
        return [chunk for chunk in range(self.n_chunks) if not self._chunk_path(chunk).is_file()]

    def record(self, key: str, value) -> None:
        """Store ``value`` in the manifest (for instance the feature names, once known)."""
        self.manifest[key] = value
        self._save_manifest()

    def write_chunk(self, chunk: int, rows, features: np.ndarray, failed: list[tuple[int, str]]) -> None:
        """Save one finished chunk: the rows it kept, their features, the rows it could not read and why."""
        arrays = {
            "rows": np.asarray(rows, dtype=np.int64),
            "features": np.asarray(features, dtype=np.float32),
            "failed_rows": np.asarray([row for row, _ in failed], dtype=np.int64),
            "failed_reasons": np.asarray([reason for _, reason in failed], dtype=str),
        }
        atomic_write(self._chunk_path(chunk), lambda file: np.savez(file, **arrays))

    def kept_rows(self) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """The rows kept by all chunks, in order, and the failed rows with their reasons (no features read)."""
        rows, failed = [], []
        for chunk in range(self.n_chunks):
            with np.load(self._chunk_path(chunk), allow_pickle=False) as stored:
                rows.append(stored["rows"])
                failed.extend(zip(stored["failed_rows"].tolist(), stored["failed_reasons"].tolist(), strict=True))
        return np.concatenate(rows), failed

    def features(self) -> Iterator[np.ndarray]:
        """The features of each chunk in order, one chunk in memory at a time."""
        for chunk in range(self.n_chunks):
            with np.load(self._chunk_path(chunk), allow_pickle=False) as stored:
                yield stored["features"]

    def remove(self) -> None:
        shutil.rmtree(self.directory)

    def _chunk_path(self, chunk: int) -> Path:
        return self.directory / f"chunk-{chunk:06d}.npz"

    def _save_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True).encode("utf-8")
        atomic_write(self.directory / MANIFEST, lambda file: file.write(text))


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResumeError(
            f"{os.fspath(directory)!r} exists but is not a partial extraction (no readable {MANIFEST}: {error}); "
            "remove it or choose another output."
        ) from error


def _differences(stored: dict, wanted: dict) -> list[str]:
    """Human-readable differences between a stored manifest and the wanted one."""
    if stored.get("format") != wanted["format"]:
        return [f"format {stored.get('format')!r} instead of {wanted['format']!r}"]
    differences = []
    for key in ("n_samples", "chunk_size"):
        if stored.get(key) != wanted[key]:
            differences.append(f"{key}: {stored.get(key)!r} then, {wanted[key]!r} now")
    stored_settings = stored.get("settings", {})
    for key in sorted(set(stored_settings) | set(wanted["settings"])):
        then, now = stored_settings.get(key), wanted["settings"].get(key)
        if then != now:
            differences.append(f"{key}: {then!r} then, {now!r} now")
    return differences
