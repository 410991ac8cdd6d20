"""One policy out of any checkpoint, into a file or directory of its own.

``extract_policy`` reads one policy (and only its files) and writes it as our
single-policy directory, an ``.npz`` of its tensors, or a torch ``state_dict`` file;
every write is atomic (:mod:`.atomic`).
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from typing import IO, Mapping, Optional

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError, did_you_mean
from .atomic import atomic_file
from .inspection import read_policy_opened
from .lazy import LazyArray, materialized
from .policy_file import PolicyMeta, write_policy_dir
from .reader import open_checkpoint
from .storage import fspath

EXTRACT_FORMATS = ("safetensors", "npz", "torch")


def extract_policy(
    checkpoint: "str | os.PathLike[str]",
    policy_id: Optional[str],
    out: "str | os.PathLike[str]",
    *,
    format: str = "safetensors",
    trusted: bool = False,
) -> str:
    """Copy one policy out of any checkpoint into a file or directory of its own.

    Args:
        checkpoint: any checkpoint ``inspect`` accepts (including a policy directory).
        policy_id: the policy to extract; may be None when the checkpoint holds one.
        out: the directory (safetensors) or file (npz, torch) to write, atomically.
        format: 'safetensors' (the single-policy directory, with its metadata), 'npz'
            (tensors only) or 'torch' (a ``state_dict`` file; needs torch).
        trusted: unpickle the source with plain pickle.

    Returns:
        The absolute path written.

    Raises:
        InvalidArgumentError: unknown ``format``, or ``out`` is not a str or ``os.PathLike``.
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint.
    """
    if format not in EXTRACT_FORMATS:
        raise InvalidArgumentError(f"format {format!r} is not one of {', '.join(EXTRACT_FORMATS)}{did_you_mean(format, EXTRACT_FORMATS)}")
    fspath(out, "out")  # before anything is read
    ckpt, layout = open_checkpoint(checkpoint)
    # Tensors stay in the source file until each is written: the peak is about one tensor.
    view, weights = read_policy_opened(ckpt, layout, policy_id, trusted=trusted, lazy=True)
    if format == "npz":
        return export_npz(weights, out)
    if format == "torch":
        return export_torch_state_dict(weights, out)
    (pv,) = view.policies.values()
    meta: PolicyMeta = {
        "stack": view.stack,
        "framework": view.framework,
        "observation_space": pv.observation_space,
        "action_space": pv.action_space,
        "model_config": pv.model_config,
        # The RLlib algorithm, as save_policy writes it: build_policy takes its defaults.
        "algorithm_class": view.algorithm_base or view.algorithm_class,
        "policy_class": pv.policy_class,
        "ray_version": view.ray_version,
        "source": view.path,
    }
    return write_policy_dir(out, pv.id, weights, meta)


def export_npz(weights: Mapping[str, "np.ndarray | LazyArray"], path: "str | os.PathLike[str]") -> str:
    """Write ``weights`` as an uncompressed ``.npz`` (``np.load(path)[name]``), atomically.

    Written as ``np.savez`` writes it (a stored zip of ``<name>.npy`` members), one tensor
    at a time straight from its buffer (``np.savez`` copies each in 16 MiB chunks);
    a :class:`~.lazy.LazyArray` is read just before it is written.

    Returns:
        The absolute path written (exactly ``path``; numpy would otherwise append '.npz').

    Raises:
        InvalidArgumentError: ``path`` is not a str or ``os.PathLike``.
    """
    final = os.path.abspath(fspath(path))

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, value in weights.items():
                with z.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    _write_npy(member, np.asarray(materialized(value)))

    atomic_file(final, write)
    return final


def _write_npy(f: IO[bytes], arr: np.ndarray) -> None:
    """One ``.npy`` as ``np.save`` writes it, the data written from the array's own buffer."""
    if arr.dtype.hasobject or not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
        return
    header = np.lib.format.header_data_from_array_1_0(arr)
    try:
        np.lib.format.write_array_header_1_0(f, header)
    except ValueError:  # a header over 64 KiB needs format 2.0
        np.lib.format.write_array_header_2_0(f, header)
    data = arr.T if header["fortran_order"] else arr
    try:
        f.write(data.reshape(-1).data.cast("B") if data.size else b"")
    except (TypeError, ValueError, NotImplementedError):  # dtypes memoryview cannot describe
        f.write(data.tobytes())


def export_torch_state_dict(weights: Mapping[str, "np.ndarray | LazyArray"], path: "str | os.PathLike[str]") -> str:
    """Write ``weights`` as a torch ``state_dict`` (an OrderedDict of tensors), atomically.

    The file loads with ``torch.load(path, weights_only=True)`` and feeds
    ``module.load_state_dict`` for a new-stack (torch RLModule) or old-stack torch policy.

    Raises:
        MissingDependencyError: torch is not installed.
        InvalidArgumentError: ``path`` is not a str or ``os.PathLike``.
    """
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(
            "exporting a torch state_dict needs torch: pip install torch"
        ) from e
    final = os.path.abspath(fspath(path))
    state = OrderedDict((str(k), torch.from_numpy(np.array(materialized(v), copy=True))) for k, v in weights.items())
    atomic_file(final, lambda f: torch.save(state, f))
    return final
