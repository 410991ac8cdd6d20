"""Where checkpoint bytes come from: a local directory (or, later, a pyarrow URI).

The reader only ever asks for paths *relative to the checkpoint root*, never for the
absolute ``state_file`` recorded in ``rllib_checkpoint.json`` (stale once a checkpoint
is moved), so a checkpoint can be copied anywhere and still be read.
"""

from __future__ import annotations

import json
import os
from typing import Any, List

from ..errors import CheckpointFormatError, NotACheckpointError


class CheckpointDir:
    """Read-only access to the files below one checkpoint root."""

    def __init__(self, root: "str | os.PathLike[str]") -> None:
        root_s = os.fspath(root)
        self.uri = os.path.abspath(os.path.expanduser(root_s))
        if not os.path.exists(self.uri):
            raise NotACheckpointError(f"{root_s}: no such file or directory")
        if not os.path.isdir(self.uri):
            raise NotACheckpointError(
                f"{root_s}: is a file, not a checkpoint directory; give the directory that holds it"
            )

    def _abs(self, rel: str) -> str:
        return os.path.join(self.uri, rel) if rel else self.uri

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._abs(rel))

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(self._abs(rel))

    def listdir(self, rel: str = "") -> List[str]:
        try:
            return sorted(os.listdir(self._abs(rel)))
        except OSError as e:
            raise CheckpointFormatError(f"{self._abs(rel)}: cannot list directory: {e.strerror}") from e

    def read_bytes(self, rel: str) -> bytes:
        path = self._abs(rel)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError as e:
            raise CheckpointFormatError(f"{path}: file missing from the checkpoint") from e
        except OSError as e:
            raise CheckpointFormatError(f"{path}: cannot read: {e.strerror}") from e

    def read_json(self, rel: str) -> Any:
        data = self.read_bytes(rel)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointFormatError(f"{self._abs(rel)}: not valid JSON ({e})") from e

    def child(self, rel: str) -> str:
        """Absolute path/URI of a file below the root, for messages."""
        return self._abs(rel)
