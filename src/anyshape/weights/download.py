"""Fetching weight files: cache, progress, hash check, atomic write.

The cache is `keras.config.keras_home()/models` (KERAS_HOME or ~/.keras, falling back to
/tmp/.keras when that is not writable), exactly where `keras.utils.get_file(...,
cache_subdir="models")` puts keras.applications' files, so a user who already has Keras'
InceptionV3 weights is served offline. torchvision's file is also looked up in torch.hub's
cache (TORCH_HOME/hub/checkpoints) and timm's in the Hugging Face hub cache, without importing
either library.

A download goes to a temporary file next to its destination, is checked (length announced by
the server, then the hash when one is published), and only then renamed into place with
os.replace: an interrupted or corrupted download never leaves a file under the final name.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request

from anyshape.atomic_write import write_atomically

__all__ = ["WeightDownloadError", "cache_dir", "fetch", "file_hash", "hash_matches", "cached_file"]

_CHUNK = 1 << 20


class WeightDownloadError(OSError):
    """A weights file could not be fetched or failed its check; the message says what to do."""


def cache_dir() -> str:
    """The directory weight files are cached in (keras.utils.get_file's models directory)."""
    # keras.config.keras_home(): KERAS_HOME or ~/.keras (Keras creates it when it loads);
    # keras.utils.get_file falls back to /tmp/.keras when it is not writable.
    base = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        pass
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(base, "models")


def file_hash(path: str, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_matches(path: str, expected: str | None, algorithm: str | None) -> bool:
    """True when no hash is published, or the file's digest starts with the published one."""
    if not expected:
        return True
    return file_hash(path, algorithm or "sha256").startswith(expected.lower())


def _other_caches(url: str) -> list[str]:
    """Where torch.hub and the Hugging Face hub would have put this file."""
    found = []
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(cache_home, "torch")
    found.append(os.path.join(torch_home, "hub", "checkpoints", os.path.basename(url)))
    if "huggingface.co/" in url:
        repo = url.split("huggingface.co/", 1)[1].split("/resolve/", 1)[0]  # "timm/<name>"
        hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME") or os.path.join(cache_home, "huggingface"), "hub"
        )
        pattern = os.path.join(hub, "models--" + repo.replace("/", "--"), "snapshots", "*", os.path.basename(url))
        found.extend(sorted(glob.glob(pattern)))
    return found


def cached_file(
    url: str,
    file_name: str,
    *,
    expected_hash: str | None = None,
    hash_algorithm: str | None = None,
    cache: str | None = None,
    progress: bool = True,
    look_elsewhere: bool = True,
) -> str:
    """The local path of `url`'s file, downloading it into the cache if needed.

    A cached file that fails its hash check is downloaded again (as keras.utils.get_file does).
    """
    directory = cache or cache_dir()
    dest = os.path.join(directory, file_name)
    if os.path.isfile(dest) and hash_matches(dest, expected_hash, hash_algorithm):
        return dest
    if look_elsewhere:
        for other in _other_caches(url):
            if os.path.isfile(other) and hash_matches(other, expected_hash, hash_algorithm):
                return other
    fetch(url, dest, expected_hash=expected_hash, hash_algorithm=hash_algorithm, progress=progress)
    return dest


def _progress_line(done: int, total: int | None, name: str) -> str:
    mb = done / 1e6
    if total:
        return f"\rdownloading {name}: {mb:7.1f} / {total / 1e6:.1f} MB ({100 * done / total:5.1f} %)"
    return f"\rdownloading {name}: {mb:7.1f} MB"


def fetch(
    url: str,
    dest: str,
    *,
    expected_hash: str | None = None,
    hash_algorithm: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> str:
    """Download `url` (http, https or file://) to `dest` atomically; returns `dest`.

    Raises WeightDownloadError when the network or the file fails: the message names the URL,
    and `dest`, where the file can be put by hand.
    """
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    algorithm = hash_algorithm or "sha256"
    name = os.path.basename(dest)
    manual = f"To use it offline, download {url} by other means and put it at {dest}" + (
        f" (its {algorithm} must start with {expected_hash})." if expected_hash else "."
    )

    def write(tmp: str) -> None:
        h = hashlib.new(algorithm)
        done = 0
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                    total = int(length) if length and length.isdigit() else None
                    stream = sys.stderr
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress:
                            stream.write(_progress_line(done, total, name))
                            stream.flush()
                    if progress:
                        stream.write("\n")
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise WeightDownloadError(f"could not download {url}: {reason}. {manual}") from e
        if total is not None and done != total:
            raise WeightDownloadError(
                f"download of {url} is truncated: got {done:,} of {total:,} bytes. "
                f"Try again; nothing was written to {dest}. {manual}"
            )
        if expected_hash and not h.hexdigest().startswith(expected_hash.lower()):
            raise WeightDownloadError(
                f"{url} downloaded ({done:,} bytes) but its {algorithm} is {h.hexdigest()}, "
                f"not the published {expected_hash}: the file is corrupt or not the published one, "
                f"so it was discarded (nothing was written to {dest}). {manual}"
            )

    # the checks raise inside write(): write_atomically then removes the temporary file
    write_atomically(dest, write)
    return dest
