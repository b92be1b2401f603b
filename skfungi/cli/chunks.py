"""Resumable, chunked results of ``skfungi extract``, and atomic file writes.

An extraction writing ``OUTPUT`` keeps its partial results in the folder
``OUTPUT.parts/``:

- ``manifest.json``: the settings that determine the features; a rerun with
  other settings is refused (its chunks would not belong together);
- the files handed over when the folder is created (the command keeps the
  fitted transformer there, so that a rerun does not fit again);
- ``lock``: the process id of the extraction writing the folder; a second
  extraction of the same OUTPUT is refused while that process runs, and takes
  the lock over once it has died;
- ``chunk-NNNNNN.npz``, one per finished chunk of samples. Each records its
  chunk number, its row range, a digest of the pickled transformer file that
  computed it and a SHA-256 checksum of its arrays, all verified when it is
  read: a chunk file copied over another, truncated or altered is refused with
  its name and the way to recompute it, and chunks of two fitted transformers
  (a ``transformer.pkl`` replaced, a chunk copied from another extraction) are
  never merged into one OUTPUT.

The folder is created complete under a temporary name and renamed into place,
and every file in it is written to a temporary name and renamed: a file under
its final name is always complete, so an interrupted run leaves finished
chunks and nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import CommandError

__all__ = ["ChunkStore", "ResumeError", "atomic_write"]

MANIFEST = "manifest.json"
LOCK = "lock"
FORMAT_VERSION = 3


class ResumeError(CommandError):
    """Partial results exist that cannot be resumed as asked (other settings, a running extraction, a bad chunk)."""


def atomic_write(path: Path, write: Callable) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on POSIX and Windows file systems: ``path`` either
    keeps its old content or holds the complete new one. The temporary file is
    removed if ``write`` fails. A failing file operation raises an ``OSError``
    of the same ``errno`` whose message names ``path``.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {os.fspath(path)!r}: {error.strerror or error}") from error
    finally:
        if temporary.exists():
            temporary.unlink()


class ChunkStore:
    """The partial results of one extraction: a manifest, the files given at creation, and finished chunks.

    Parameters
    ----------
    directory : Path
        The ``OUTPUT.parts`` folder.
    manifest : dict
        ``{"format": ..., "settings": {...}, "n_samples": ..., "chunk_size": ...}``.
    resuming : bool
        Whether ``directory`` holds partial results of an earlier run (else it
        is created by :meth:`writing`).

    Before chunks are read or written, :meth:`use_transformer` names the
    fitted transformer that computes them.
    """

    def __init__(self, directory: Path, manifest: dict, resuming: bool):
        self.directory = Path(directory)
        self.manifest = manifest
        self.resuming = resuming
        self.transformer: tuple[Path, str] | None = None

    @classmethod
    def open(cls, directory, settings: dict, n_samples: int, chunk_size: int, restart: bool = False) -> ChunkStore:
        """The partial results in ``directory`` to resume, or a new store; writes nothing.

        Raises
        ------
        ResumeError
            If another running extraction holds ``directory``, or it holds
            results of other settings (unless ``restart``: they are then
            discarded by :meth:`writing`), or it is not a partial-results folder.
        """
        directory = Path(directory)
        manifest = {"format": FORMAT_VERSION, "settings": settings, "n_samples": n_samples, "chunk_size": chunk_size}
        if not directory.exists():
            return cls(directory, manifest, resuming=False)
        _refuse_if_locked(directory)
        if restart:
            return cls(directory, manifest, resuming=False)
        stored = _read_manifest(directory)
        differences = _differences(stored, manifest)
        if differences:
            raise ResumeError(
                f"{os.fspath(directory)!r} holds a partial extraction made with other settings "
                f"({'; '.join(differences)}): rerun with the same settings to resume it, or pass "
                "--restart to discard it."
            )
        return cls(directory, stored, resuming=True)

    def path(self, name: str) -> Path:
        """The path of the file ``name`` of the folder."""
        return self.directory / name

    def use_transformer(self, path: Path, digest: str) -> None:
        """Chunks are computed by the transformer pickled in ``path`` whose bytes have ``digest``.

        Every chunk written records ``digest``; a chunk read that records
        another one is refused.
        """
        self.transformer = (Path(path), digest)

    @contextmanager
    def writing(self, files: dict[str, Callable] | None = None) -> Iterator[ChunkStore]:
        """Hold the folder for this process during the block.

        A new store's folder is created with its manifest, its lock and
        ``files`` (``{name: write(file)}``), replacing the discarded results of
        a restart; a resumed one is locked. The lock is released at the end.
        """
        if self.resuming:
            _acquire_lock(self.directory)
        else:
            self._create(files or {})
        try:
            yield self
        finally:
            _release_lock(self.directory)

    @property
    def n_chunks(self) -> int:
        return -(-self.manifest["n_samples"] // self.manifest["chunk_size"])

    def chunk_range(self, chunk: int) -> range:
        size = self.manifest["chunk_size"]
        return range(chunk * size, min((chunk + 1) * size, self.manifest["n_samples"]))

    def pending(self) -> list[int]:
        """Chunks not finished yet, in order; the finished ones are checked (number and row range)."""
        pending = []
        for chunk in range(self.n_chunks):
            if self._chunk_path(chunk).is_file():
                self._read_chunk(chunk, ("chunk", "row_range", "rows", "failed_rows", "transformer"))
            else:
                pending.append(chunk)
        return pending

    def write_chunk(self, chunk: int, rows, features: np.ndarray, failed: list[tuple[int, str]]) -> None:
        """Save one finished chunk: the rows it kept, their features, the rows it could not read and why."""
        span = self.chunk_range(chunk)
        arrays = {
            "chunk": np.int64(chunk),
            "row_range": np.asarray([span.start, span.stop], dtype=np.int64),
            "rows": np.asarray(rows, dtype=np.int64),
            "features": np.asarray(features, dtype=np.float32),
            "failed_rows": np.asarray([row for row, _ in failed], dtype=np.int64),
            "failed_reasons": np.asarray([reason for _, reason in failed], dtype=str),
            "transformer": np.asarray(self._transformer_digest()),
        }
        arrays["checksum"] = np.asarray(_checksum(arrays))
        atomic_write(self._chunk_path(chunk), lambda file: np.savez(file, **arrays))

    def kept_rows(self) -> tuple[list[np.ndarray], list[tuple[int, str]]]:
        """The rows kept by each chunk, and the failed rows with their reasons (features are not read)."""
        rows, failed = [], []
        for chunk in range(self.n_chunks):
            stored = self._read_chunk(
                chunk, ("chunk", "row_range", "rows", "failed_rows", "failed_reasons", "transformer")
            )
            rows.append(stored["rows"])
            failed.extend(zip(stored["failed_rows"].tolist(), stored["failed_reasons"].tolist(), strict=True))
        return rows, failed

    def features(self) -> Iterator[np.ndarray]:
        """The features of each chunk in order, checksum verified, one chunk in memory at a time."""
        for chunk in range(self.n_chunks):
            yield self._read_chunk(chunk)["features"]

    def remove(self) -> None:
        shutil.rmtree(self.directory)

    # -- internals ---------------------------------------------------------------------

    def _chunk_path(self, chunk: int) -> Path:
        return self.directory / f"chunk-{chunk:06d}.npz"

    def _transformer_digest(self) -> str:
        if self.transformer is None:
            raise RuntimeError("ChunkStore.use_transformer must name the transformer before chunks are used.")
        return self.transformer[1]

    def _create(self, files: dict[str, Callable]) -> None:
        directory = self.directory
        temporary = directory.with_name(f".{directory.name}.new-{os.getpid()}")
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
        try:
            _write_lock(temporary / LOCK)
            text = json.dumps(self.manifest, indent=1, sort_keys=True).encode("utf-8")
            atomic_write(temporary / MANIFEST, lambda file: file.write(text))
            for name, write in files.items():
                atomic_write(temporary / name, write)
            if directory.exists():  # --restart: the earlier results go once the new folder is complete
                _refuse_if_locked(directory)
                discarded = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.rename(directory, discarded)
                shutil.rmtree(discarded)
            try:
                os.rename(temporary, directory)
            except OSError as error:
                raise ResumeError(
                    f"another extraction created {os.fspath(directory)!r} meanwhile; run one extraction per "
                    "OUTPUT at a time."
                ) from error
        finally:
            if temporary.exists():
                shutil.rmtree(temporary)

    def _read_chunk(self, chunk: int, members: tuple[str, ...] | None = None) -> dict:
        """The arrays ``members`` (all, checksum verified, when None) of a chunk file, checked to be that chunk."""
        path = self._chunk_path(chunk)
        span = self.chunk_range(chunk)
        recompute = (
            f"delete {os.fspath(path)!r} and rerun the same command to recompute that chunk "
            f"(rows {span.start}-{span.stop - 1})"
        )
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in (members or stored.files)}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ResumeError(
                f"chunk file {os.fspath(path)!r} is damaged or truncated ({error}); {recompute}."
            ) from error
        number, (start, stop) = int(arrays["chunk"]), arrays["row_range"].tolist()
        if (number, start, stop) != (chunk, span.start, span.stop):
            raise ResumeError(
                f"chunk file {os.fspath(path)!r} holds rows {start}-{stop - 1} (chunk {number}), not rows "
                f"{span.start}-{span.stop - 1} (chunk {chunk}): it was copied or moved from elsewhere; {recompute}."
            )
        if str(arrays["transformer"]) != self._transformer_digest():
            raise ResumeError(
                f"chunk file {os.fspath(path)!r} was computed with another fitted transformer than "
                f"{os.fspath(self.transformer[0])!r} (digest {str(arrays['transformer'])!r}, not "
                f"{self.transformer[1]!r}): the features of two fits cannot be merged; pass --restart to discard "
                "the partial results and start afresh."
            )
        covered = np.sort(np.concatenate([arrays["rows"], arrays["failed_rows"]]))
        if not np.array_equal(covered, np.arange(span.start, span.stop)):
            raise ResumeError(f"chunk file {os.fspath(path)!r} does not hold every row of its range; {recompute}.")
        if members is None:
            checksum = str(arrays.pop("checksum"))
            if checksum != _checksum(arrays) or len(arrays["features"]) != len(arrays["rows"]):
                raise ResumeError(f"chunk file {os.fspath(path)!r} fails its checksum (altered); {recompute}.")
        return arrays


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# -- the lock -------------------------------------------------------------------------------


def _write_lock(path: Path) -> None:
    """Create ``path`` holding this process's id; fails with FileExistsError if it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, file)


def _acquire_lock(directory: Path) -> None:
    """Lock ``directory`` for this process, taking over the lock of a process that has died."""
    path = directory / LOCK
    while True:
        try:
            _write_lock(path)
            return
        except FileExistsError:
            _refuse_if_locked(directory)
            # The holder is gone. Renaming its lock away succeeds for one taker only; a second taker
            # finds the first one's lock on its next try.
            stale = directory / f".{LOCK}.stale-{os.getpid()}"
            try:
                os.rename(path, stale)
            except FileNotFoundError:
                continue
            stale.unlink()


def _release_lock(directory: Path) -> None:
    path = directory / LOCK
    if _lock_holder(path) == {"pid": os.getpid(), "host": socket.gethostname()}:
        path.unlink()


def _lock_holder(path: Path) -> dict | None:
    """The lock's content, None without a lock, ``{}`` when it cannot be read."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _refuse_if_locked(directory: Path) -> None:
    """Raise ResumeError if a running process (or one this machine cannot check) holds ``directory``'s lock."""
    path = directory / LOCK
    holder = _lock_holder(path)
    if holder is None or _running(holder) is False:
        return
    who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
    raise ResumeError(
        f"{os.fspath(directory)!r} is being written by another skfungi extract ({who}): wait for it to finish, "
        f"or stop it. If no extraction is running any more, delete {os.fspath(path)!r}."
    )


def _running(holder: dict) -> bool | None:
    """Whether the lock holder's process runs; None when this machine cannot tell (another host)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


# -- the manifest ---------------------------------------------------------------------------


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
