"""Copy a finished local directory to a remote URI (``s3://``, ``gs://``, ...) via pyarrow.

Object stores have no rename, so a directory cannot be swapped in atomically there the
way :func:`rllib_ext.checkpoint.policy_file.write_policy_dir` does locally. What holds
instead: the directory is first written and checked locally, then every data file is
uploaded and the manifest (``policy.json``) goes **last**. A reader never finds a
new manifest without its data, and each object is replaced whole (never half old, half
new tensors). An upload cut short while *replacing* a policy leaves the new weights
under the old manifest: its tensor index (names, shapes, dtypes) is checked on every
read, so a different layout fails loudly; with the same layout the weights are the
complete new ones and only the metadata is the older one's.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import CheckpointError, MissingDependencyError


def is_remote(path: "str | os.PathLike[str]") -> bool:
    """True for ``scheme://`` URIs other than ``file://`` (those are local paths)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def upload_dir(local: str, uri: str, *, last: Sequence[str] = ()) -> str:
    """Upload the files below ``local`` to ``uri``; the names in ``last`` go after the rest.

    Returns:
        ``uri`` without a trailing slash.

    Raises:
        MissingDependencyError: pyarrow is not installed.
        CheckpointError: the URI cannot be opened or a file cannot be written (names it).
    """
    try:
        import pyarrow.fs as pafs
    except ImportError as e:
        raise MissingDependencyError(f"{uri}: writing remote URIs needs pyarrow (pip install pyarrow)") from e
    uri = uri.rstrip("/")
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for bad URIs
        raise CheckpointError(f"{uri}: cannot open this URI for writing ({e})") from e
    files = []
    for dirpath, _, names in os.walk(local):
        for name in names:
            files.append(os.path.relpath(os.path.join(dirpath, name), local))
    files.sort(key=lambda rel: (rel in last, rel))  # data first, manifests last
    for rel in files:
        target = f"{root}/{rel.replace(os.sep, '/')}"
        try:
            with open(os.path.join(local, rel), "rb") as src, fs.open_output_stream(target) as out:
                out.write(src.read())
        except OSError as e:
            raise CheckpointError(f"{uri}/{rel}: upload failed ({e}); the policy at {uri} may be incomplete, "
                                  "write it again") from e
    return uri
