"""Where the data comes from: explicit folder, $MOVIELENS_DIR, cache, download."""

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from train import download


@pytest.fixture()
def zip_server(fixture_dir):
    """Serves a GroupLens-style zip (ml-100k/ inside) from 127.0.0.1."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in Path(fixture_dir).iterdir():
            z.write(path, f"ml-100k/{path.name}")
    payload = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ml-100k.zip", hashlib.md5(payload).hexdigest()
    server.shutdown()


def test_order_data_dir_then_env_then_cache(fixture_dir, tmp_path, monkeypatch):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(fixture_dir, other)
    monkeypatch.setenv(download.ENV_VAR, str(fixture_dir))
    assert download.locate(other, cache_dir=tmp_path) == other
    assert download.locate(None, cache_dir=tmp_path) == fixture_dir
    monkeypatch.delenv(download.ENV_VAR)
    cached = tmp_path / download.ZIP_MEMBER_DIR
    import shutil

    shutil.copytree(fixture_dir, cached)
    assert download.locate(None, cache_dir=tmp_path, url="http://127.0.0.1:9/none") == cached


def test_download_success(zip_server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    url, md5 = zip_server
    path = download.locate(None, cache_dir=tmp_path, url=url, md5=md5)
    assert path == tmp_path / download.ZIP_MEMBER_DIR
    assert download.has_files(path)
    assert "100%" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")]


def test_download_checksum_mismatch_leaves_nothing(zip_server, tmp_path, monkeypatch):
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    url, _ = zip_server
    with pytest.raises(download.DataUnavailable, match="checksum mismatch"):
        download.locate(None, cache_dir=tmp_path, url=url, md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_lists_three_ways(tmp_path, monkeypatch):
    monkeypatch.delenv(download.ENV_VAR, raising=False)
    with pytest.raises(download.DataUnavailable) as e:
        download.locate(None, cache_dir=tmp_path, url="http://127.0.0.1:9/ml-100k.zip")
    message = str(e.value)
    assert "--data-dir" in message and download.ENV_VAR in message and str(tmp_path) in message


def test_an_explicit_data_dir_without_the_files_is_an_error_naming_them(fixture_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(download.ENV_VAR, str(fixture_dir))  # has the files, but was not asked for
    with pytest.raises(download.DataUnavailable, match=f"--data-dir {tmp_path / 'missing'} does not exist: "
                                                       "no u.data, u.item, u.user"):
        download.locate(tmp_path / "missing", cache_dir=tmp_path)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "u.item").write_text("")
    with pytest.raises(download.DataUnavailable, match=r"--data-dir .*partial has no u\.data, u\.user \("):
        download.locate(tmp_path / "partial", cache_dir=tmp_path)


def test_an_unusable_movielens_dir_falls_through_with_a_note(fixture_dir, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv(download.ENV_VAR, str(tmp_path / "empty"))
    shutil.copytree(fixture_dir, tmp_path / download.ZIP_MEMBER_DIR)
    assert download.locate(None, cache_dir=tmp_path) == tmp_path / download.ZIP_MEMBER_DIR
    assert f"${download.ENV_VAR} {tmp_path / 'empty'} lacks u.data, u.item, u.user; looking further" in capsys.readouterr().err
