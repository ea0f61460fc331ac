"""Downloads: progress, hash check, atomic write, cache; offline errors that say what to do.

A loopback http.server in a thread stands in for the weight hosts; nothing leaves the machine
(urlopen is made to fail for any other host).
"""

import hashlib
import http.server
import os
import threading
import urllib.error
import urllib.request

import pytest

from anyshape.weights import REGISTRY, WeightDownloadError, resolve
from anyshape.weights.download import cache_dir, cached_file, fetch
from anyshape.weights.loader import fetch_weight_file

PAYLOAD = os.urandom(3 * (1 << 20) + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    requests = []

    def do_GET(self):  # noqa: N802
        _Handler.requests.append(self.path)
        if self.path == "/weights.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Only loopback and file:// URLs may be opened."""
    real = urllib.request.urlopen

    def guarded(url, *a, **kw):
        u = url if isinstance(url, str) else url.full_url
        if not (u.startswith("file:") or u.startswith("http://127.0.0.1:")):
            raise urllib.error.URLError("network disabled in tests")
        return real(url, *a, **kw)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


def _leftovers(d):
    # a download's temporary file is hidden (".<name>.<...>") beside its destination
    return [p for p in os.listdir(d) if p.startswith(".")]


def test_download_with_progress_and_hash(server, tmp_path, capsys):
    dest = tmp_path / "w.bin"
    fetch(f"{server}/weights.bin", str(dest), expected_hash=SHA, hash_algorithm="sha256")
    assert dest.read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert "downloading w.bin" in err and "100.0 %" in err and "3.1 MB" in err
    assert not _leftovers(tmp_path)


def test_cache_is_reused_and_md5_prefixes_work(server, tmp_path):
    _Handler.requests.clear()
    for _ in range(2):
        path = cached_file(
            f"{server}/weights.bin",
            "cached.bin",
            expected_hash=MD5,
            hash_algorithm="md5",
            cache=str(tmp_path),
            progress=False,
            look_elsewhere=False,
        )
    assert _Handler.requests == ["/weights.bin"]  # the second call was served from the cache
    assert open(path, "rb").read() == PAYLOAD
    # torch.hub-style hash prefix (8 hex digits of the sha256)
    assert (
        cached_file(
            f"{server}/weights.bin",
            "cached.bin",
            expected_hash=MD5[:8],
            hash_algorithm="md5",
            cache=str(tmp_path),
            progress=False,
            look_elsewhere=False,
        )
        == path
    )


def test_wrong_hash_writes_nothing(server, tmp_path):
    dest = tmp_path / "w.bin"
    with pytest.raises(WeightDownloadError) as e:
        fetch(f"{server}/weights.bin", str(dest), expected_hash="0" * 64, progress=False)
    msg = str(e.value)
    assert "not the published" in msg and str(dest) in msg and f"{server}/weights.bin" in msg
    assert not dest.exists() and not _leftovers(tmp_path)


def test_truncated_download_writes_nothing(server, tmp_path):
    dest = tmp_path / "w.bin"
    with pytest.raises(WeightDownloadError, match="truncated|could not download"):
        fetch(f"{server}/truncated.bin", str(dest), progress=False)
    assert not dest.exists() and not _leftovers(tmp_path)


def test_a_corrupt_cached_file_is_replaced(server, tmp_path):
    (tmp_path / "c.bin").write_bytes(b"corrupt")
    path = cached_file(
        f"{server}/weights.bin",
        "c.bin",
        expected_hash=SHA,
        hash_algorithm="sha256",
        cache=str(tmp_path),
        progress=False,
        look_elsewhere=False,
    )
    assert open(path, "rb").read() == PAYLOAD


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "copy.bin"
    fetch(src.as_uri(), str(dest), expected_hash=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_offline_error_names_the_url_and_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    ws = resolve("imagenet")
    with pytest.raises(WeightDownloadError) as e:
        fetch_weight_file(ws, include_top=False, progress=False)
    msg = str(e.value)
    expected_path = os.path.join(str(tmp_path / "kh"), "models", ws.file_name_notop)
    assert ws.url_notop in msg and expected_path in msg and ws.file_hash_notop in msg
    assert not os.path.exists(expected_path)


def test_cached_registry_file_is_served_offline(tmp_path, monkeypatch):
    """A file already in keras.utils.get_file's cache (KERAS_HOME/models) needs no network."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert cache_dir() == os.path.join(str(tmp_path / "kh"), "models")
    os.makedirs(cache_dir())
    ws = REGISTRY["imagenet"]
    # same entry, with the hash of our stand-in file (the real file is 96 MB and not shipped)
    from dataclasses import replace

    ws = replace(ws, file_hash=MD5)
    path = os.path.join(cache_dir(), ws.file_name)
    with open(path, "wb") as f:
        f.write(PAYLOAD)
    assert fetch_weight_file(ws, include_top=True, progress=False) == path


def test_torch_hub_cache_is_looked_up(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    hub = tmp_path / "th" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    ws = REGISTRY["torchvision.IMAGENET1K_V1"]
    (hub / ws.file_name).write_bytes(PAYLOAD)
    # the real file's sha256 starts with 0cc3c7bd: our stand-in does not, so it is not used
    with pytest.raises(WeightDownloadError, match="0cc3c7bd"):
        fetch_weight_file(ws, progress=False)
    from dataclasses import replace

    assert fetch_weight_file(replace(ws, file_hash=SHA[:8]), progress=False) == str(hub / ws.file_name)
