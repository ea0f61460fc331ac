"""The inputs of a Ray run: local files and folders or URLs pyarrow opens (s3://, gs://).

`list_inputs` lists them as `engine.find_images` lists local ones (sorted, hidden files
skipped); `check_local_files` refuses, on the driver, the local files the local reader refuses;
`FileLoader` opens one file for an actor behind a read buffer; `path_id` is a path's identity
for the rule "each path once". One way for inputs and outputs: `filesystem`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import PurePosixPath

from anyshape.engine.images import find_images, path_key

__all__ = ["FileLoader", "check_local_files", "filesystem", "is_url", "list_inputs", "path_id", "url_of"]


def is_url(path) -> bool:
    return "://" in str(path)


def filesystem(path):
    """(pyarrow FileSystem, path inside it) for a local path or a URL such as s3://bucket/key."""
    import pyarrow.fs as pafs

    if not is_url(path):
        return pafs.LocalFileSystem(), os.path.abspath(str(path))
    try:
        return pafs.FileSystem.from_uri(str(path))
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError with the reason
        raise ValueError(f"{path}: cannot be opened as a file system URL ({e})") from None


def url_of(fs_root: str, inner: str) -> str:
    """The user-facing spelling of `inner` (a path inside the file system of URL `fs_root`)."""
    scheme = str(fs_root).split("://", 1)[0]
    return f"{scheme}://{inner}"


def list_inputs(paths: Iterable) -> tuple[list[str], list[tuple[str, str]]]:
    """(files, missing) like `engine.find_images`, for local paths and URLs alike."""
    import pyarrow.fs as pafs

    files: list[str] = []
    missing: list[tuple[str, str]] = []
    local = [p for p in paths if not is_url(p)]
    found, gone = find_images(local)
    files.extend(str(p) for p in found)
    missing.extend((str(p), why) for p, why in gone)
    seen = set(files)
    for url in (p for p in paths if is_url(p)):
        fs, inner = filesystem(url)
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.File:
            keys = [inner]
        elif info.type == pafs.FileType.Directory:
            selected = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
            base = PurePosixPath(inner)
            keys = sorted(
                i.path
                for i in selected
                if i.type == pafs.FileType.File
                and not any(part.startswith(".") for part in PurePosixPath(i.path).relative_to(base).parts)
            )
        else:
            missing.append((str(url), "no such file or folder"))
            continue
        for key in keys:
            name = url_of(url, key)
            if name not in seen:
                seen.add(name)
                files.append(name)
    return files, missing


READ_BUFFER = 4 * 1024 * 1024  # one request reads a whole photo of object storage, not a whole large file


class FileLoader:
    """Opens a file (local or URL) for `run_images`; one file system per URL root.

    The file is opened for random access behind a read buffer, so the decoder reads only what it
    needs: a header for a file that is not an image, however large. Files are checked on the
    driver before they are sent (`check_local_files`): opening a FIFO would block for ever."""

    def __init__(self):
        self._fs: dict = {}

    def __call__(self, path) -> io.BufferedReader:
        from anyshape.preprocess import ImageLoadError

        path = str(path)
        root = path.split("/", 3)[:3] if is_url(path) else ["local"]
        key = "/".join(root)
        if key not in self._fs:
            self._fs[key] = filesystem(path)[0]
        inner = path.split("://", 1)[1] if is_url(path) else os.path.abspath(path)
        try:
            return io.BufferedReader(self._fs[key].open_input_file(inner), buffer_size=READ_BUFFER)
        except (OSError, FileNotFoundError) as e:
            raise ImageLoadError(f"{path}: cannot be read ({e})") from None


def check_local_files(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(usable, refused) by the local reader's own checks (`preprocess.check_image_file`: a
    regular file, not empty), made on the driver so that no actor opens a FIFO or a device."""
    from anyshape.preprocess import ImageLoadError, check_image_file

    usable, refused = [], []
    for p in paths:
        try:
            if not is_url(p):
                check_image_file(p)
            usable.append(p)
        except ImageLoadError as e:
            refused.append((p, str(e)))
    return usable, refused


def path_id(path: str) -> str:
    return str(path) if is_url(path) else path_key(path)
