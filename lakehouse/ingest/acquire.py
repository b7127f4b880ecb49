"""Find a MovieLens dataset's files: in a folder, in a zip, or by downloading the official zip.

Whichever way they are found, the files are read as binary streams straight from where they are
(nothing is extracted), and each is named by its path inside the folder or zip ("ml-100k/u.data"),
which is what lineage records as the source file. Ingest reads a file through a `Snapshot`, which
hashes exactly the bytes it hands out and notices a file that changes while it is read.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Callable

from lakehouse.datasets import DatasetSpec, FileKind

Progress = Callable[[int, int | None], None]  # (bytes done, total bytes or None when unknown)

SOURCE_ENV = "MOVIELENS_SOURCE"
# Short enough that an offline machine fails fast, long enough for a slow but working link.
NETWORK_TIMEOUT_SECONDS = 15
_CHUNK = 1 << 20
_REQUIRED: tuple[FileKind, ...] = ("ratings", "movies")

_MD5_BSD = re.compile(r"MD5\s*\(.*\)\s*=\s*([0-9a-fA-F]{32})\b")  # MD5 (ml-32m.zip) = <md5>
_MD5_GNU = re.compile(r"^\s*([0-9a-fA-F]{32})(?:\s|$)")  # <md5>  ml-32m.zip


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where we were told to look."""


class DownloadError(RuntimeError):
    """The official zip could not be downloaded or did not match its checksum."""


class FileChangedError(RuntimeError):
    """A file changed while it was being read, or since its checksum was taken."""


class Snapshot:
    """One read of a dataset file, as it was when opened, hashed as it is read.

    It hands out at most the bytes the file had when it was opened, so an append cannot slip into
    the middle of a read, and `finish()` gives the sha256 of exactly the bytes handed out: what the
    parser consumed, and so what the ledger must record. A file that changed during the read
    (another size or mtime at the end than at the opening, or fewer bytes than it had) is refused
    by `finish()` rather than passed off as one version of it; see `finish`.
    """

    def __init__(
        self, raw: BinaryIO, name: str, version: Callable[[], tuple[int, int]], size: int | None = None
    ) -> None:
        """`version()` is the (size, mtime in ns) of the file read, now; `size` the bytes to read
        when that is not the file's own size (a zip member)."""
        self.name = name
        self.bytes_read = 0
        self._raw = raw
        self._version = version
        self._opened = version()
        self.size = self._opened[0] if size is None else size  # the most this reads
        self._digest = hashlib.sha256()
        self._change: str | None = None  # how the file changed during the read, seen at its end
        self._at_end = False

    def read(self, size: int = -1) -> bytes:
        left = self.size - self.bytes_read
        data = self._raw.read(left if size < 0 else min(size, left)) if left > 0 else b""
        if data:
            self._digest.update(data)
            self.bytes_read += len(data)
            return data
        if not self._at_end:
            self._at_end = True
            self._change = self._how_changed()
        return b""

    def _how_changed(self) -> str | None:
        size, mtime = self._version()
        if self.bytes_read < self.size:
            return f"it had {self.size:,} bytes when opened but only {self.bytes_read:,} could be read"
        if size != self._opened[0]:
            return f"it had {self._opened[0]:,} bytes when opened and {size:,} at the end of the read"
        if mtime != self._opened[1]:
            return "it was modified during the read"
        return None

    def finish(self, expected_sha256: str | None = None) -> str:
        """The sha256 of the bytes read, once the file has been read to its end.

        Raises FileChangedError when the file changed during the read, or when the digest is not
        `expected_sha256` (the checksum taken before, by which ingest decided the file needed
        loading): either way the bytes read are not one settled version of the file. A file still
        being written is refused rather than loaded in part, as a prefix would commit a partial
        dataset as a success and may end in half a line, which can still parse as a wrong row.
        """
        if not self._at_end:
            raise RuntimeError(f"{self.name} was not read to its end: its digest would not cover the file")
        if self._change:
            raise FileChangedError(f"{self.name} changed while it was read: {self._change}")
        digest = self._digest.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise FileChangedError(
                f"{self.name} changed between its checksum and its read (sha256 {expected_sha256[:12]}... "
                f"then {digest[:12]}...)"
            )
        return digest

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class DatasetFiles:
    """Where each file of a dataset is, and how to read it."""

    dataset: DatasetSpec
    origin: str  # the folder or zip given as source, or the URL the zip was downloaded from
    container: Path  # the folder or zip the files are read from
    members: tuple[tuple[FileKind, str], ...]  # kind -> "/"-separated path inside the container

    def open(self, kind: FileKind) -> BinaryIO | None:
        """A binary stream of that file, None when the dataset has no such file. Close it after use."""
        member = self._member(kind)
        if member is None:
            return None
        if self.container.is_dir():
            return open(self.container / member, "rb")
        # The member keeps the zip's file handle open until it is closed itself.
        return zipfile.ZipFile(self.container).open(member)  # type: ignore[return-value]

    def relative_name(self, kind: FileKind) -> str:
        """The file's path inside the folder or zip, e.g. "ml-100k/u.data"."""
        member = self._member(kind)
        if member is None:
            raise ValueError(f"{self.dataset.name} has no {kind} file")
        return member

    def snapshot(self, kind: FileKind) -> Snapshot:
        """That file opened for one read that hashes what it reads (see Snapshot). Close it after use."""
        member = self.relative_name(kind)
        if self.container.is_dir():
            raw = open(self.container / member, "rb")

            def version() -> tuple[int, int]:
                stat = os.fstat(raw.fileno())  # the file opened, even if renamed over meanwhile
                return stat.st_size, stat.st_mtime_ns

            return Snapshot(raw, member, version)
        zip_path = self.container

        def zip_version() -> tuple[int, int]:  # a member's size is in the zip's directory: watch the zip
            stat = zip_path.stat()
            return stat.st_size, stat.st_mtime_ns

        with zipfile.ZipFile(zip_path) as archive:  # the member keeps the file open until it is closed
            info = archive.getinfo(member)
            return Snapshot(archive.open(info), member, zip_version, size=info.file_size)  # type: ignore[arg-type]

    def sha256(self, kind: FileKind) -> str:
        """sha256 of the file's bytes as they are now, to recognise a file already ingested before
        loading it. The ledger records the digest of the bytes the load parsed (`snapshot`), which
        ingest checks against this one."""
        with self.snapshot(kind) as source:
            while source.read(_CHUNK):
                pass
            return source.finish()

    def _member(self, kind: FileKind) -> str | None:
        return dict(self.members).get(kind)


def locate(
    dataset: DatasetSpec,
    source: Path | None,
    cache_dir: Path,
    progress: Progress | None = None,
) -> DatasetFiles:
    """Find the dataset's files in `source` (a folder or a zip), or download them when it is None.

    In a folder or zip the files may sit at the top or one folder down (the official zips hold a
    "ml-100k/" folder). Downloads go to `cache_dir` and are reused while their checksum holds.
    """
    if source is None:
        zip_path = download(dataset, cache_dir, progress)
        return _files_in_zip(dataset, zip_path, origin=dataset.url)
    source = Path(source).expanduser().resolve()
    if source.is_dir():
        return _files_in_folder(dataset, source)
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise ValueError(f"{source} is neither a folder nor a zip file of {dataset.name}")
        return _files_in_zip(dataset, source, origin=str(source))
    raise DatasetNotFoundError(f"{dataset.name} source {source} does not exist")


# ---------------------------------------------------------------------------------------------
# Folders and zips


def _files_in_folder(dataset: DatasetSpec, folder: Path) -> DatasetFiles:
    # The paths, relative to `folder`, where the dataset's files could be: at the top or one down.
    subfolders = sorted(child.name for child in folder.iterdir() if child.is_dir())
    present = {
        path
        for file in dataset.files
        for path in [file.name, *(f"{sub}/{file.name}" for sub in subfolders)]
        if (folder / path).is_file()
    }
    prefix = _dataset_folder(dataset, present, where=f"the folder {folder}")
    members = _members(dataset, present, prefix, where=f"the folder {folder / prefix}")
    if prefix:
        return DatasetFiles(dataset, str(folder), folder, members)
    # Files at the top of the given folder: name them from its parent, so that lineage reads
    # "ml-100k/u.data" whether the folder or its parent was given.
    named = tuple((kind, f"{folder.name}/{member}") for kind, member in members)
    return DatasetFiles(dataset, str(folder), folder.parent, named)


def _files_in_zip(dataset: DatasetSpec, zip_path: Path, origin: str) -> DatasetFiles:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            present = {name for name in archive.namelist() if not name.endswith("/")}
    except zipfile.BadZipFile as error:
        raise ValueError(f"{zip_path} is not a readable zip file: {error}") from None
    prefix = _dataset_folder(dataset, present, where=f"the zip {zip_path}")
    where = f"the zip {zip_path}" + (f" under {prefix}" if prefix else "")
    members = _members(dataset, present, prefix, where=where)
    return DatasetFiles(dataset, origin, zip_path, members)


def _dataset_folder(dataset: DatasetSpec, present: set[str], where: str) -> str:
    """The folder prefix ("" or "ml-100k/") that holds the dataset's ratings file.

    Preference: the top level, then a sub-folder named like the dataset, then the only sub-folder
    that has it. Several candidates and none named like the dataset is ambiguous.
    """
    ratings = dataset.files[0].name
    prefixes = sorted(
        path[: -len(ratings)]
        for path in present
        if path == ratings or (path.endswith("/" + ratings) and path.count("/") == 1)
    )
    if not prefixes:
        raise DatasetNotFoundError(
            f"{dataset.name}: expected {ratings} in {where} or in one of its sub-folders, found none"
        )
    for preferred in ("", f"{dataset.name}/"):
        if preferred in prefixes:
            return preferred
    if len(prefixes) > 1:
        raise ValueError(
            f"{dataset.name}: several sub-folders of {where} hold {ratings} "
            f"({', '.join(prefixes)}); pass the one you mean as the source"
        )
    return prefixes[0]


def _members(
    dataset: DatasetSpec, present: set[str], prefix: str, where: str
) -> tuple[tuple[FileKind, str], ...]:
    """Each of the dataset's files found under `prefix`; ratings and movies must be there."""
    members = []
    for file in dataset.files:
        path = prefix + file.name
        if path in present:
            members.append((file.kind, path))
        elif file.kind in _REQUIRED:
            raise DatasetNotFoundError(f"{dataset.name}: expected {file.name} in {where}, it is missing")
    return tuple(members)


# ---------------------------------------------------------------------------------------------
# Downloads


def download(dataset: DatasetSpec, cache_dir: Path, progress: Progress | None = None) -> Path:
    """The dataset's official zip in `cache_dir`, downloaded unless a verified copy is there.

    The checksum is the pinned md5 when the registry has one, else the one GroupLens publishes
    beside the zip; it is remembered in "<zip>.md5" so later runs can reuse the copy offline.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{dataset.name}.zip"
    remembered = target.with_name(target.name + ".md5")

    known = dataset.md5 or (remembered.read_text().strip() if remembered.is_file() else None)
    if known and target.is_file() and _md5_of(target) == known.lower():
        return target

    expected = (dataset.md5 or fetch_published_md5(dataset)).lower()
    if target.is_file() and _md5_of(target) == expected:
        remembered.write_text(expected + "\n")
        return target

    partial = target.with_name(target.name + ".part")
    actual = _fetch(dataset, partial, progress)
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"The download of {dataset.url} does not match its checksum (expected md5 {expected}, "
            f"got {actual}); the bad file was deleted. Try again, or {_by_hand(dataset)}."
        )
    os.replace(partial, target)  # only a verified zip ever carries the final name
    remembered.write_text(expected + "\n")
    return target


def fetch_published_md5(dataset: DatasetSpec) -> str:
    """The md5 GroupLens publishes at "<url>.md5"."""
    url = dataset.url + ".md5"
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_SECONDS) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except _NETWORK_ERRORS as error:
        raise DownloadError(_unreachable(dataset, url, error)) from error
    try:
        return parse_md5_listing(text)
    except ValueError as error:
        raise DownloadError(f"{url}: {error}. {_sentence(_by_hand(dataset))}") from None


def parse_md5_listing(text: str) -> str:
    """The md5 in a checksum file: "<md5>  <file>" (md5sum) or "MD5 (<file>) = <md5>" (BSD md5)."""
    match = _MD5_BSD.search(text) or _MD5_GNU.search(text)
    if match is None:
        raise ValueError(f"no md5 checksum found in {text[:80]!r}")
    return match.group(1).lower()


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)


def _fetch(dataset: DatasetSpec, destination: Path, progress: Progress | None) -> str:
    """Stream the zip into `destination`, reporting progress; returns the md5 of what was written."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(dataset.url, timeout=NETWORK_TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            with open(destination, "wb") as out:
                if progress:
                    progress(done, total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
    except _NETWORK_ERRORS as error:
        destination.unlink(missing_ok=True)
        raise DownloadError(_unreachable(dataset, dataset.url, error)) from error
    return digest.hexdigest()


def _unreachable(dataset: DatasetSpec, url: str, error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        why = f"the server answered HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        why = f"{error.reason}"  # DNS failure, connection refused, timeout...
    else:
        why = f"{type(error).__name__}: {error}"
    return f"Could not download {url} ({why}). {_sentence(_by_hand(dataset))}"


def _by_hand(dataset: DatasetSpec) -> str:
    return (
        f"download {dataset.url} by hand and pass --source /path/to/{dataset.name}.zip "
        f"(or the unzipped folder), or set {SOURCE_ENV} to that path"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _md5_of(path: Path) -> str:
    with open(path, "rb") as stream:
        return _digest(stream, hashlib.md5())


def _digest(stream: BinaryIO, digest: "hashlib._Hash") -> str:
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
