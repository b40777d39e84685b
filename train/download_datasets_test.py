"""--dataset: every GroupLens set by name, its published checksum, its layout; served from 127.0.0.1 or file://."""

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from testing.movielens_fixture import write_1m_fixture, write_csv_fixture
from train import data, download


def _zip(directory: Path, member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(directory.iterdir()):
            z.write(path, f"{member}/{path.name}")
    return buffer.getvalue()


@pytest.fixture()
def grouplens(tmp_path):
    """A GroupLens look-alike on 127.0.0.1: /<name>.zip and /<name>.zip.md5 from ``files``; logs the paths asked."""
    files: dict[str, bytes] = {}
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files, asked
    server.shutdown()


def test_every_set_has_its_url_and_layout():
    assert download.DATASETS == ("ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small")
    assert download.dataset_url("ml-25m") == "https://files.grouplens.org/datasets/movielens/ml-25m.zip"
    assert [download.layout_of(name).name for name in download.DATASETS] == ["ml-100k", "ml-1m"] + ["csv"] * 4
    with pytest.raises(ValueError, match="unknown dataset 'ml-5m'"):
        download.layout_of("ml-5m")


def test_downloads_a_set_checked_against_its_published_md5(grouplens, tmp_path, monkeypatch, capsys):
    base, files, asked = grouplens
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    payload = _zip(write_1m_fixture(tmp_path / "src"), "ml-1m")
    files["ml-1m.zip"] = payload
    files["ml-1m.zip.md5"] = f"{hashlib.md5(payload).hexdigest()}  ml-1m.zip\n".encode()  # md5sum's format
    cache = tmp_path / "cache"
    path = download.locate(None, cache_dir=cache, url=f"{base}/ml-1m.zip", dataset="ml-1m")
    assert path == cache / "ml-1m" and asked == ["/ml-1m.zip.md5", "/ml-1m.zip"]
    assert data.load(path).layout == "ml-1m"
    err = capsys.readouterr().err
    assert "100%" in err and " MB" in err
    assert [p.name for p in cache.iterdir()] == ["ml-1m"]  # no temporary left
    # Found in the cache the next time: nothing downloaded.
    assert download.locate(None, cache_dir=cache, url=f"{base}/ml-1m.zip", dataset="ml-1m") == path
    assert len(asked) == 2


def test_file_urls_and_the_bsd_checksum_format(tmp_path, monkeypatch):
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    payload = _zip(write_csv_fixture(tmp_path / "src"), "ml-latest-small")
    (tmp_path / "ml-latest-small.zip").write_bytes(payload)
    (tmp_path / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {hashlib.md5(payload).hexdigest()}\n")
    path = download.locate(None, cache_dir=tmp_path / "cache", url=(tmp_path / "ml-latest-small.zip").as_uri(),
                           dataset="ml-latest-small")
    assert path == tmp_path / "cache" / "ml-latest-small"
    assert data.load(path).layout == "csv"


def test_a_wrong_or_missing_checksum_leaves_nothing(grouplens, tmp_path, monkeypatch):
    base, files, _ = grouplens
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    files["ml-20m.zip"] = _zip(write_csv_fixture(tmp_path / "src"), "ml-20m")
    files["ml-20m.zip.md5"] = b"0" * 32 + b"  ml-20m.zip\n"
    cache = tmp_path / "cache"
    with pytest.raises(download.DataUnavailable, match="checksum mismatch"):
        download.locate(None, cache_dir=cache, url=f"{base}/ml-20m.zip", dataset="ml-20m")
    assert list(cache.iterdir()) == []
    files["ml-20m.zip.md5"] = b"not a checksum\n"
    with pytest.raises(download.DataUnavailable, match=r"ml-20m\.zip\.md5 does not hold one MD5 checksum"):
        download.locate(None, cache_dir=cache, url=f"{base}/ml-20m.zip", dataset="ml-20m")
    del files["ml-20m.zip.md5"]
    with pytest.raises(download.DataUnavailable) as e:
        download.locate(None, cache_dir=cache, url=f"{base}/ml-20m.zip", dataset="ml-20m")
    assert "404" in str(e.value) and "python -m train --data-dir /path/to/ml-20m" in str(e.value)
    assert list(cache.iterdir()) == []


def test_a_zip_of_the_wrong_layout_is_refused(grouplens, fixture_dir, tmp_path, monkeypatch):
    base, files, _ = grouplens
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    payload = _zip(fixture_dir, "ml-25m")  # 100K files under the 25M name
    files["ml-25m.zip"], files["ml-25m.zip.md5"] = payload, hashlib.md5(payload).hexdigest().encode()
    with pytest.raises(download.DataUnavailable, match=r"does not contain ml-25m/ with ratings\.csv, movies\.csv"):
        download.locate(None, cache_dir=tmp_path / "cache", url=f"{base}/ml-25m.zip", dataset="ml-25m")


def test_movielens_dir_is_used_only_for_its_own_layout(fixture_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(download.ENV_VAR, str(fixture_dir))  # a 100K folder
    assert download.locate(None, cache_dir=tmp_path, dataset="ml-100k") == fixture_dir
    assert download.locate(None, cache_dir=tmp_path) == fixture_dir
    cached = write_1m_fixture(tmp_path / "ml-1m")
    assert download.locate(None, cache_dir=tmp_path, dataset="ml-1m") == cached
    assert "lacks ratings.dat, movies.dat, users.dat; looking further" in capsys.readouterr().err
    monkeypatch.setenv(download.ENV_VAR, str(cached))  # any layout will do when no set is named
    assert download.locate(None, cache_dir=tmp_path / "elsewhere") == cached


def test_an_explicit_data_dir_of_any_layout(fixture_dir, tmp_path):
    csv_dir = write_csv_fixture(tmp_path / "csv")
    assert download.locate(csv_dir) == csv_dir
    assert download.locate(csv_dir, dataset="ml-25m") == csv_dir
    with pytest.raises(download.DataUnavailable, match=r"--data-dir .*csv has no ratings\.dat, movies\.dat, users\.dat "
                                                       r"\(ml-1m needs ratings\.dat, movies\.dat, users\.dat;"):
        download.locate(csv_dir, dataset="ml-1m")
    with pytest.raises(download.DataUnavailable, match=r"no u\.data, u\.item, u\.user \(MovieLens 100K needs u\.data, "
                                                       r"u\.item, u\.user; MovieLens 1M needs ratings\.dat"):
        download.locate(tmp_path / "nothing")


def test_the_cli_passes_dataset_to_locate(fixture_dir, capsys):
    from train import __main__ as train_main

    args = train_main.build_parser().parse_args(["--run-name", "x", "--dataset", "ml-32m"])
    assert args.dataset == "ml-32m"
    assert train_main.main(["--run-name", "x", "--data-dir", str(fixture_dir), "--dataset", "ml-1m"]) == 1
    assert "has no ratings.dat, movies.dat, users.dat (ml-1m needs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main.build_parser().parse_args(["--run-name", "x", "--dataset", "ml-5m"])
