"""Unit tests for lakehouse.ingest.acquire: folders, zips, and downloads from a local HTTP server.

No test touches the internet: downloads come from an http.server on 127.0.0.1, and the
unreachable case uses a closed local port.
"""
from __future__ import annotations

import hashlib
import socket
import threading
import time
import zipfile
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lakehouse.ingest.acquire import (
    DatasetFiles,
    DatasetNotFoundError,
    DownloadError,
    locate,
    parse_md5_listing,
)
from lakehouse.datasets import get_dataset
from lakehouse.ingest.parsers import RatingRow, parse_file

ML_100K = get_dataset("ml-100k")
ML_LATEST = get_dataset("ml-latest-small")

# Tiny synthetic stand-ins for the real files.
SMALL_100K = {
    "u.data": b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    "u.item": b"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya|"
    + b"|".join([b"0"] * 19)
    + b"\n",
    "u.user": b"196|49|M|writer|55105\n",
}
SMALL_LATEST = {
    "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n",
    "movies.csv": b"movieId,title,genres\n1,Toy Story (1995),Adventure\n",
}


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "ml-100k/") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return path


def read(files: DatasetFiles, kind) -> bytes:
    stream = files.open(kind)
    assert stream is not None
    with stream:
        return stream.read()


# --- folders ---------------------------------------------------------------------------------------


def test_folder_given_directly(tmp_path):
    folder = write_folder(tmp_path / "ml-100k", SMALL_100K)
    files = locate(ML_100K, folder, tmp_path / "cache")
    assert files.origin == str(folder)
    assert files.relative_name("ratings") == "ml-100k/u.data"
    assert files.relative_name("users") == "ml-100k/u.user"
    assert read(files, "movies") == SMALL_100K["u.item"]
    assert files.sha256("ratings") == hashlib.sha256(SMALL_100K["u.data"]).hexdigest()


def test_sha256_follows_changes_to_the_file(tmp_path):
    folder = write_folder(tmp_path / "ml-100k", SMALL_100K)
    files = locate(ML_100K, folder, tmp_path / "cache")
    before = files.sha256("ratings")
    assert files.sha256("ratings") == before
    (folder / "u.data").write_bytes(b"1\t2\t3\t881250949\n")
    assert files.sha256("ratings") == hashlib.sha256(b"1\t2\t3\t881250949\n").hexdigest() != before


def test_parent_folder_is_searched_one_level_down(tmp_path):
    write_folder(tmp_path / "data" / "ml-100k", SMALL_100K)
    files = locate(ML_100K, tmp_path / "data", tmp_path / "cache")
    assert files.relative_name("ratings") == "ml-100k/u.data"
    assert read(files, "ratings") == SMALL_100K["u.data"]


def test_folder_named_like_the_dataset_wins_over_other_candidates(tmp_path):
    write_folder(tmp_path / "data" / "ml-latest-small", SMALL_LATEST)
    write_folder(tmp_path / "data" / "ml-25m", {name: b"other" for name in SMALL_LATEST})
    files = locate(ML_LATEST, tmp_path / "data", tmp_path / "cache")
    assert files.relative_name("ratings") == "ml-latest-small/ratings.csv"
    assert read(files, "ratings") == SMALL_LATEST["ratings.csv"]


def test_several_unnamed_candidates_are_ambiguous(tmp_path):
    write_folder(tmp_path / "data" / "copy-a", SMALL_LATEST)
    write_folder(tmp_path / "data" / "copy-b", SMALL_LATEST)
    with pytest.raises(ValueError, match="copy-a/, copy-b/"):
        locate(ML_LATEST, tmp_path / "data", tmp_path / "cache")


def test_dataset_without_users_opens_none(tmp_path):
    files = locate(ML_LATEST, write_folder(tmp_path / "ml-latest-small", SMALL_LATEST), tmp_path)
    assert files.open("users") is None
    with pytest.raises(ValueError, match="no users file"):
        files.relative_name("users")


def test_missing_ratings_names_the_file_and_the_place(tmp_path):
    folder = write_folder(tmp_path / "empty", {"README": b"nothing here"})
    with pytest.raises(DatasetNotFoundError) as caught:
        locate(ML_100K, folder, tmp_path / "cache")
    assert "u.data" in str(caught.value) and str(folder) in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_movies_names_the_file(tmp_path):
    folder = write_folder(tmp_path / "ml-100k", {"u.data": SMALL_100K["u.data"]})
    with pytest.raises(DatasetNotFoundError, match="expected u.item in the folder"):
        locate(ML_100K, folder, tmp_path / "cache")


def test_missing_source_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        locate(ML_100K, tmp_path / "nowhere", tmp_path / "cache")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    not_zip = tmp_path / "ml-100k.zip"
    not_zip.write_bytes(b"this is not a zip")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        locate(ML_100K, not_zip, tmp_path / "cache")


# --- zips ------------------------------------------------------------------------------------------


def test_zip_with_a_dataset_folder_inside(tmp_path):
    archive = write_zip(tmp_path / "ml-100k.zip", SMALL_100K)
    files = locate(ML_100K, archive, tmp_path / "cache")
    assert files.origin == str(archive)
    assert files.relative_name("ratings") == "ml-100k/u.data"
    assert read(files, "users") == SMALL_100K["u.user"]
    assert files.sha256("movies") == hashlib.sha256(SMALL_100K["u.item"]).hexdigest()


def test_zip_with_files_at_the_top(tmp_path):
    archive = write_zip(tmp_path / "flat.zip", SMALL_LATEST, prefix="")
    files = locate(ML_LATEST, archive, tmp_path / "cache")
    assert files.relative_name("movies") == "movies.csv"
    assert read(files, "ratings") == SMALL_LATEST["ratings.csv"]


def test_zip_ignores_files_two_levels_down(tmp_path):
    archive = write_zip(tmp_path / "deep.zip", SMALL_100K, prefix="a/b/")
    with pytest.raises(DatasetNotFoundError, match="u.data"):
        locate(ML_100K, archive, tmp_path / "cache")


def test_zip_missing_movies(tmp_path):
    archive = write_zip(tmp_path / "ml-100k.zip", {"u.data": SMALL_100K["u.data"]})
    with pytest.raises(DatasetNotFoundError, match="expected u.item in the zip"):
        locate(ML_100K, archive, tmp_path / "cache")


def test_parsing_straight_from_a_zip(tmp_path):
    files = locate(ML_100K, write_zip(tmp_path / "ml-100k.zip", SMALL_100K), tmp_path / "cache")
    with files.open("ratings") as stream:
        rows = list(parse_file(stream, ML_100K.file("ratings"), ML_100K))
    assert [type(r) for r in rows] == [RatingRow, RatingRow]


# --- md5 files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0E33842E24A9C977BE4E0107933C0723  ml-100k.zip\n",
        "0e33842e24a9c977be4e0107933c0723 *ml-100k.zip",
        "MD5 (ml-100k.zip) = 0e33842e24a9c977be4e0107933c0723\n",
        "0e33842e24a9c977be4e0107933c0723\n",
    ],
)
def test_parse_md5_listing(text):
    assert parse_md5_listing(text) == "0e33842e24a9c977be4e0107933c0723"


def test_parse_md5_listing_refuses_garbage():
    with pytest.raises(ValueError, match="no md5"):
        parse_md5_listing("<html>not found</html>")


# --- downloads -------------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields (base url, served dir, requests)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def publish(served: Path, md5_text: str | None = None) -> str:
    """Put a synthetic ml-100k.zip (and optionally its .md5 file) on the server; returns its md5."""
    archive = write_zip(served / "ml-100k.zip", SMALL_100K)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    if md5_text is not None:
        (served / "ml-100k.zip.md5").write_text(md5_text.format(md5=md5))
    return md5


def test_download_verified_against_the_published_md5(server, tmp_path):
    base, served, requests = server
    publish(served, "{md5}  ml-100k.zip\n")
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5=None)
    seen: list[tuple[int, int | None]] = []
    files = locate(spec, None, tmp_path / "cache", progress=lambda done, total: seen.append((done, total)))
    size = (served / "ml-100k.zip").stat().st_size
    assert files.origin == spec.url
    assert files.relative_name("ratings") == "ml-100k/u.data"
    assert read(files, "ratings") == SMALL_100K["u.data"]
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert sorted(requests) == ["/ml-100k.zip", "/ml-100k.zip.md5"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ml-100k.zip", "ml-100k.zip.md5"]


def test_bsd_style_md5_file_is_accepted(server, tmp_path):
    base, served, _ = server
    publish(served, "MD5 (ml-100k.zip) = {md5}\n")
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5=None)
    assert read(locate(spec, None, tmp_path / "cache"), "users") == SMALL_100K["u.user"]


def test_cached_zip_is_reused_without_the_network(server, tmp_path):
    base, served, requests = server
    publish(served, "{md5}  ml-100k.zip\n")
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5=None)
    locate(spec, None, tmp_path / "cache")
    requests.clear()
    files = locate(spec, None, tmp_path / "cache")  # the remembered md5 vouches for the copy
    assert requests == []
    assert read(files, "ratings") == SMALL_100K["u.data"]


def test_pinned_md5_needs_no_md5_file_and_reuses_the_cache(server, tmp_path):
    base, served, requests = server
    md5 = publish(served)
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5=md5)
    locate(spec, None, tmp_path / "cache")
    locate(spec, None, tmp_path / "cache")
    assert requests == ["/ml-100k.zip"]


def test_corrupt_cached_zip_is_downloaded_again(server, tmp_path):
    base, served, requests = server
    md5 = publish(served)
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5=md5)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ml-100k.zip").write_bytes(b"truncated")
    files = locate(spec, None, cache)
    assert requests == ["/ml-100k.zip"]
    assert read(files, "movies") == SMALL_100K["u.item"]


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    base, served, _ = server
    publish(served)
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5="0" * 32)
    with pytest.raises(DownloadError) as caught:
        locate(spec, None, tmp_path / "cache")
    message = str(caught.value)
    assert "does not match its checksum" in message and "0" * 32 in message
    assert "--source" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_published_md5_mismatch(server, tmp_path):
    base, served, _ = server
    publish(served, "ffffffffffffffffffffffffffffffff  ml-100k.zip\n")
    spec = replace(ML_100K, url=f"{base}/ml-100k.zip", md5=None)
    with pytest.raises(DownloadError, match="does not match its checksum"):
        locate(spec, None, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_http_error_explains_what_to_do(server, tmp_path):
    base, _, _ = server
    spec = replace(ML_100K, url=f"{base}/missing.zip", md5="0" * 32)
    with pytest.raises(DownloadError) as caught:
        locate(spec, None, tmp_path / "cache")
    message = str(caught.value)
    assert "HTTP 404" in message
    assert "--source /path/to/ml-100k.zip" in message and "MOVIELENS_SOURCE" in message


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens here once the probe is closed


@pytest.mark.parametrize("md5", [None, "0" * 32])
def test_unreachable_network_fails_fast_with_instructions(tmp_path, md5):
    url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
    spec = replace(ML_100K, url=url, md5=md5)
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        locate(spec, None, tmp_path / "cache")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert f"Download {url} by hand" in message
    assert "--source /path/to/ml-100k.zip" in message and "unzipped folder" in message
    assert "MOVIELENS_SOURCE" in message
    assert not any((tmp_path / "cache").iterdir())
