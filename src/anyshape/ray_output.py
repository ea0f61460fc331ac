"""The output folder of a Ray run, local or a URL: its `manifest.json` and whole Parquet part
files (`OutputFolder`), the rows written each path once (`PartWriter`), and `read_output`.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from anyshape.engine.manifest import ResumeMismatch, RunManifest
from anyshape.errors import Message, OutputExistsError, ParameterError
from anyshape.ray_inputs import filesystem, is_url, path_id

if TYPE_CHECKING:
    from anyshape.distributed import DistributedSummary

__all__ = ["MANIFEST", "PART_PREFIX", "OutputFolder", "PartWriter", "part_schema", "read_output"]

MANIFEST = "manifest.json"
PART_PREFIX = "part-"


class OutputFolder:
    """The Parquet part files and manifest of one distributed run, in a local folder or a URL."""

    def __init__(self, out):
        self.out = str(out)
        self.fs, self.root = filesystem(out)

    def _join(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def listing(self) -> list[str]:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise ParameterError(
                "{out=*} is a file; {python:on Ray}{cli:with --ray}, {out} is a folder (local or s3://)", out=self.out
            )
        return sorted(PurePosixPath(i.path).name for i in self.fs.get_file_info(pafs.FileSelector(self.root)))

    def parts(self) -> list[str]:
        return [n for n in self.listing() if n.startswith(PART_PREFIX) and n.endswith(".parquet")]

    def read_manifest(self) -> RunManifest | None:
        import json

        if MANIFEST not in self.listing():
            return None
        with self.fs.open_input_stream(self._join(MANIFEST)) as f:
            try:
                return RunManifest.from_json(json.loads(f.read()))
            except ValueError as e:
                raise ResumeMismatch(
                    Message(
                        "{path}/{manifest} cannot be read ({error}); start again with another {out}",
                        path=self.out,
                        manifest=MANIFEST,
                        error=e,
                    )
                ) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file: a local file appears by an atomic rename, an S3 object on upload."""
        if is_url(self.out):
            with self.fs.open_output_stream(self._join(name)) as f:
                f.write(data)
            return
        from anyshape.atomic_write import write_bytes_atomically

        write_bytes_atomically(os.path.join(self.root, name), data)

    def prepare(self, manifest: RunManifest, *, resume: bool) -> bool:
        """Check the folder before any work: a new run needs an empty or absent folder; a resume
        needs the same manifest. Returns whether the run is new (its manifest is then written by
        `record`, once the run has started: a run that could not start leaves nothing behind)."""
        names = self.listing()
        if names and not resume:
            what = "an anyshape run" if MANIFEST in names else f"{len(names)} file(s) that are not an anyshape run"
            raise OutputExistsError(
                "{out=*} already holds {what}; pass {resume=True} to continue that run, "
                "or choose another {out} (nothing is overwritten)",
                out=self.out,
                what=what,
            )
        if names and resume:
            recorded = self.read_manifest()
            if recorded is None:
                raise OutputExistsError(
                    "{out=*} holds files but no {manifest}: it is not an anyshape run to resume; choose another {out}",
                    out=self.out,
                    manifest=MANIFEST,
                )
            manifest.check_resume(recorded, where=self.out)
            return False
        return True

    def record(self, manifest: RunManifest) -> None:
        """Write the manifest of a new run (making the folder)."""
        if not is_url(self.out):
            os.makedirs(self.root, exist_ok=True)
        self.write_bytes(MANIFEST, manifest.to_bytes())

    def done(self) -> dict[str, str | None]:
        """{path: error or None} of every row already written."""
        import pyarrow.parquet as pq

        rows: dict[str, str | None] = {}
        for name in self.parts():
            table = pq.read_table(self._join(name), columns=["path", "error"], filesystem=self.fs)
            for p, e in zip(table.column("path").to_pylist(), table.column("error").to_pylist()):
                rows[p] = e
        return rows

    def write_part(self, table) -> str:
        import io

        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        name = f"{PART_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        self.write_bytes(name, buf.getvalue())
        return name


def read_output(out, columns: list[str] | None = None):
    """All rows of a distributed run's output folder as one pyarrow Table, sorted by path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = OutputFolder(out)
    tables = [pq.read_table(folder._join(n), columns=columns, filesystem=folder.fs) for n in folder.parts()]
    if not tables:
        return None
    table = pa.concat_tables(tables)
    return table.sort_by("path")


def part_schema(task: str):
    import pyarrow as pa

    if task == "features":
        return pa.schema([("path", pa.string()), ("features", pa.list_(pa.float32())), ("error", pa.string())])
    return pa.schema(
        [
            ("path", pa.string()),
            ("class_ids", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float32())),
            ("error", pa.string()),
        ]
    )


class PartWriter:
    """Rows into whole Parquet part files, each path once: a retried task's second answer, or a
    path a part file already holds, is dropped (the first one stands)."""

    def __init__(
        self, task: str, folder: OutputFolder, summary: DistributedSummary, written: set, rows_per_part, on_part
    ):
        self.task, self.folder, self.summary = task, folder, summary
        self.written = set(written)
        self.rows_per_part, self.on_part = rows_per_part, on_part
        self.pending: list[dict] = []

    def add(self, row: dict) -> None:
        key = path_id(row["path"])
        if key in self.written:
            return
        self.written.add(key)
        self.pending.append({k: v for k, v in row.items() if not k.startswith("_")})
        if row["error"] is not None:
            self.summary.failed.append((row["path"], row["error"]))
        else:
            self.summary.ok += 1
        if len(self.pending) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.pending:
            return
        table = pa.Table.from_pylist(self.pending, schema=part_schema(self.task))
        self.folder.write_part(table)
        self.summary.parts += 1
        self.pending.clear()
        if self.on_part is not None:
            self.on_part(self.summary, table)
