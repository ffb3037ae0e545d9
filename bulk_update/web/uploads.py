"""Uploaded sheets: kept in a private folder, size-capped, and cleaned up.

Each upload gets its own folder (mode 0700) under one private root (a temporary folder,
0700, removed when the server stops). The sheet file lives there only until the library
has read it: the rows are then held in memory (`Upload.sheet`) and the file is deleted.
The dry-run sheet of the preview is written there too, until the upload is discarded.
Uploads not confirmed within `ttl_s` are discarded, as are the oldest past `limit`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import InputError

if TYPE_CHECKING:
    from ..pipeline import Sheet
    from ..reader import WorksheetInfo
    from .preview import Preview, UnknownColumn

__all__ = ["Upload", "UploadStore", "UploadTooLarge", "safe_name"]

#: Bytes read from an upload's body at a time.
_READ_BYTES = 1 << 16
_UNSAFE = re.compile(r"[^\w .()+,-]+")


class UploadTooLarge(InputError):
    """The uploaded file is over the page's size cap (the page answers 413)."""


class ChunkReader(Protocol):
    """What an upload's body is read from (aiohttp's BodyPartReader is one)."""

    async def read_chunk(self, size: int = ...) -> bytes: ...


def safe_name(filename: str | None) -> str:
    """The base name of an uploaded file, safe as a file name, extension kept.

    Folders the browser may send (`C:\\Users\\x\\a.csv`) are dropped; characters other
    than letters, digits, space and `.()+,-_` become `_`; at most 120 characters.
    """
    base = re.split(r"[\\/]", filename or "")[-1]
    base = unicodedata.normalize("NFC", base).strip().lstrip(".")
    base = _UNSAFE.sub("_", base)
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[: 120 - len(suffix) - 1].strip() or "sheet"
    return f"{stem}.{suffix}" if suffix else stem


@dataclass
class Upload:
    """One uploaded sheet on its way through mapping and preview to a run."""

    id: str
    owner: str
    name: str
    folder: Path
    created: float
    #: A workbook's worksheets, when it has several to choose from; the one chosen.
    worksheets: tuple[WorksheetInfo, ...] = ()
    worksheet: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unknown: list[UnknownColumn] = field(default_factory=list)
    sheet: Sheet | None = None
    preview: Preview | None = None
    #: The answer to the preview's question about hidden rows and columns (send, skip).
    hidden: str | None = None
    #: "Compare with Comeet" was asked: the preview (and the run) read each row first.
    compare: bool = False
    #: Where its Resume, Picture and Files cells are looked up; None: the page's files
    #: folder. An undo sheet's (`UploadStore.adopt`) is its own folder, beside its resumes.
    files_dir: Path | None = None
    #: The run whose undo sheet this is (its sheet's name); "" for a sheet uploaded.
    undo_of: str = ""

    @property
    def path(self) -> Path:
        """Where the uploaded file is kept until it has been read."""
        return self.folder / self.name

    def forget_file(self) -> None:
        """Delete the uploaded file (its rows are in memory by now)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class UploadStore:
    """The private folder of uploads and the uploads in progress."""

    def __init__(
        self,
        *,
        max_bytes: int,
        parent: Path | None = None,
        ttl_s: float = 3600.0,
        limit: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._limit = limit
        self._clock = clock
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdtemp creates the folder 0700 whatever the umask: private from the start.
        self.root = Path(tempfile.mkdtemp(prefix="bulk-update-uploads-", dir=parent))
        self._uploads: dict[str, Upload] = {}

    def __len__(self) -> int:
        return len(self._uploads)

    def too_large(self) -> UploadTooLarge:
        """The error for a file over the cap."""
        mb = self.max_bytes / (1 << 20)
        return UploadTooLarge(
            f"the file is larger than {mb:g} MB, the most this page accepts",
            fix="split the sheet into smaller ones, or run it from the command line "
            "(bulk-update run FILE), which has no such limit",
        )

    def _new(self, owner: str, filename: str | None) -> Upload:
        self.expire()
        return Upload(
            id=secrets.token_urlsafe(16),
            owner=owner,
            name=safe_name(filename),
            folder=Path(tempfile.mkdtemp(prefix="upload-", dir=self.root)),
            created=self._clock(),
        )

    def _keep(self, upload: Upload) -> Upload:
        self._uploads[upload.id] = upload
        while len(self._uploads) > self._limit:
            self.discard(next(iter(self._uploads)))
        return upload

    async def receive(self, owner: str, filename: str | None, body: ChunkReader) -> Upload:
        """Store an uploaded file, refusing (InputError) one larger than `max_bytes`."""
        upload = self._new(owner, filename)
        size = 0
        try:
            fd = os.open(upload.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := await body.read_chunk(_READ_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self.too_large()
                    out.write(chunk)
        except BaseException:
            shutil.rmtree(upload.folder, ignore_errors=True)
            raise
        if size == 0:
            shutil.rmtree(upload.folder, ignore_errors=True)
            raise InputError(
                f"{upload.name} is empty", fix="choose the sheet file itself (.xlsx or .csv)"
            )
        return self._keep(upload)

    def adopt(self, owner: str, sheet: Path, name: str, *, undo_of: str) -> Upload:
        """An upload of the undo sheet of the run of `undo_of` (its sheet's name), called
        `name`: a private copy, read as any upload, with its file cells looked up beside
        `sheet` (where its resumes are). No size cap: the tool wrote it."""
        upload = self._new(owner, name)
        upload.undo_of = undo_of
        try:
            shutil.copyfile(sheet, upload.path)
            os.chmod(upload.path, 0o600)
        except BaseException:
            shutil.rmtree(upload.folder, ignore_errors=True)
            raise
        upload.files_dir = sheet.parent
        return self._keep(upload)

    def get(self, upload_id: str, owner: str) -> Upload | None:
        """The upload of this id made by this session, if it is still kept."""
        self.expire()
        upload = self._uploads.get(upload_id)
        if upload is None or upload.owner != owner:
            return None
        return upload

    def discard(self, upload_id: str) -> None:
        """Forget an upload and delete its folder."""
        upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            shutil.rmtree(upload.folder, ignore_errors=True)

    def expire(self) -> None:
        """Discard the uploads older than `ttl_s`."""
        now = self._clock()
        for upload in [u for u in self._uploads.values() if now - u.created > self._ttl_s]:
            self.discard(upload.id)

    def close(self) -> None:
        """Delete every upload and the private folder."""
        self._uploads.clear()
        shutil.rmtree(self.root, ignore_errors=True)
