"""``export_onnx``: a policy's acting path as one ONNX graph, runnable with onnxruntime alone.

The graph is :class:`~rllib_ext.act.numpy_policy.NumpyPolicy`'s forward pass op for op: the
``MeanStdFilter`` as constants (computed in float64 as RLlib's filter does, then cast to
float32), the encoder(s), an LSTM step for recurrent models, the heads, the log-std clip.

Inputs: ``obs`` ``[batch, obs_dim]`` raw float32 observations; for a masked policy
(:attr:`NumpyPolicy.masked`) ``action_mask`` ``[batch, actions]`` (1.0 per legal action:
an illegal one's logit becomes ``FLOAT_MIN``, as in the module); and for recurrent models
one ``state_in_*`` ``[batch, cell]`` per state tensor (see :func:`state_names`).
Outputs: ``action_dist_inputs``, ``greedy_action`` (int64 argmax or the Gaussian mean),
``value``, and ``state_out_*`` for recurrent models. The batch axis is dynamic. The model's
``metadata_props`` record the spaces (JSON), the policy id, the source checkpoint, the
filter and the state names (keys start with ``rllib_ext.``).

Writing needs torch, onnx and onnxscript (the ``onnx`` extra); they are imported inside
:func:`export_onnx`. Running the file needs onnxruntime only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._version import __version__
from ..checkpoint.atomic import atomic_file
from ..checkpoint.filters import SMALL_NUMBER
from ..errors import InvalidArgumentError, MissingDependencyError
from .nets import CATEGORICAL, ActorCritic, Dense, State
from .numpy_policy import FLOAT_MIN, NumpyPolicy, input_space

if TYPE_CHECKING:  # imported inside export_onnx at run time (the onnx extra)
    import torch

INSTALL_HINT = 'pip install "rllib_ext[onnx]" (torch, onnx, onnxscript, onnxruntime)'


def state_names(network: ActorCritic) -> List[Tuple[str, ...]]:
    """The state's key paths in graph order: ``[("h",), ("c",)]`` or ``[("actor", "h"), ...]``."""
    if not network.recurrent:
        return []
    if network.critic is None:
        return [("h",), ("c",)]
    return [(tower, k) for tower in ("actor", "critic") for k in ("h", "c")]


def flatten_state(network: ActorCritic, state: State) -> Dict[str, np.ndarray]:
    """``{"state_in_<path>": array}`` from NumpyPolicy's nested state (onnxruntime feeds)."""
    out = {}
    for path in state_names(network):
        value: object = state
        for key in path:
            if not isinstance(value, Mapping) or key not in value:
                paths = ", ".join(map("/".join, state_names(network)))
                raise InvalidArgumentError(f"state {state!r}: no {'/'.join(path)!r}; expected the nested state of "
                                           f"NumpyPolicy.initial_state(), with {paths}")
            value = value[key]
        out["state_in_" + "_".join(path)] = np.asarray(value, np.float32)
    return out


def unflatten_state(network: ActorCritic, arrays: List[np.ndarray]) -> Optional[State]:
    """The nested state from the graph's ``state_out_*`` outputs, in :func:`state_names` order."""
    paths = state_names(network)
    if not paths:
        return None
    cell: Dict[str, np.ndarray] = {}  # one encoder's {"h", "c"}
    towers: Dict[str, Dict[str, np.ndarray]] = {}  # or {"actor": {...}, "critic": {...}}
    for path, value in zip(paths, arrays):
        if len(path) == 1:
            cell[path[0]] = value
        else:
            towers.setdefault(path[0], {})[path[1]] = value
    return cell if cell else dict(towers)


def export_onnx(
    source: Union[str, "os.PathLike[str]", NumpyPolicy],
    out: "str | os.PathLike[str]",
    policy_id: Optional[str] = None,
    *,
    agent_id: Optional[str] = None,
    filters: bool = True,
    trusted: bool = False,
    opset: int = 18,
) -> str:
    """Write one policy of a checkpoint (or a :class:`NumpyPolicy`) as an ONNX file.

    Args:
        source: a checkpoint path (read with :meth:`NumpyPolicy.from_checkpoint`) or a
            NumpyPolicy already built.
        out: the ``.onnx`` file to write (replaced atomically).
        policy_id, agent_id, filters, trusted: as :meth:`NumpyPolicy.from_checkpoint`.
        opset: the ONNX opset to target.

    Returns:
        The absolute path written.

    Raises:
        MissingDependencyError: torch, onnx or onnxscript is not installed.
        UnsupportedModelError: the model is not one NumpyPolicy computes.
    """
    policy = source if isinstance(source, NumpyPolicy) else NumpyPolicy.from_checkpoint(
        source, policy_id, agent_id=agent_id, filters=filters, trusted=trusted
    )
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it; fail here with the hint)
        import torch
    except ImportError as e:
        raise MissingDependencyError(f"exporting to ONNX needs {e.name}: {INSTALL_HINT}") from e
    graph = _graph_module(policy)
    net = policy.network
    names = ["_".join(p) for p in state_names(net)]
    batch = 2  # an example batch above 1, so the exporter does not specialise the axis
    obs_shape = input_space(policy.observation_space).shape or ()  # a 1-D Box (NumpyPolicy checked)
    args = [torch.zeros(batch, obs_shape[0])]
    masks = ["action_mask"] if policy.masked else []
    args += [torch.ones(batch, int(policy.action_space.n or 0))] if policy.masked else []
    init = policy.initial_state(batch)
    args += [torch.as_tensor(v) for v in flatten_state(net, init).values()] if init is not None else []
    dim = torch.export.Dim("batch", min=1)
    out = os.path.abspath(os.fspath(out))
    with tempfile.TemporaryDirectory(prefix="rllib_ext-onnx-") as tmp, _quiet():
        raw = os.path.join(tmp, "raw.onnx")
        torch.onnx.export(
            graph, tuple(args), raw,
            input_names=["obs"] + masks + [f"state_in_{n}" for n in names],
            output_names=["action_dist_inputs", "greedy_action", "value"] + [f"state_out_{n}" for n in names],
            dynamic_shapes=({0: dim}, tuple({0: dim} for _ in args[1:])) if len(args) > 1 else ({0: dim},),
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
        model = onnx.load(raw)
    for key, value in _metadata(policy, names).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_file(out, lambda f: onnx.save(model, f))  # a temporary sibling, fsynced, renamed
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's exporter warns about optional packages (torchvision) and its own deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _metadata(policy: NumpyPolicy, names: List[str]) -> Dict[str, str]:
    return {
        "rllib_ext.version": __version__,
        "rllib_ext.policy_id": policy.policy_id,
        "rllib_ext.source": policy.source,
        "rllib_ext.observation_space": json.dumps(policy.observation_space.to_dict()),
        "rllib_ext.action_space": json.dumps(policy.action_space.to_dict()),
        "rllib_ext.distribution": policy.network.distribution,
        "rllib_ext.observation_filter": policy.obs_filter.describe() if policy.obs_filter else "none",
        "rllib_ext.state": json.dumps(names),
    }


Activation = Callable[["torch.Tensor"], "torch.Tensor"]


def _graph_module(policy: NumpyPolicy) -> "torch.nn.Module":
    """A torch module computing NumpyPolicy's forward pass, weights and filter as buffers."""
    import torch  # export_onnx imported it already (with the install hint if missing)
    import torch.nn.functional as F
    from torch import nn

    net, flt = policy.network, policy.obs_filter
    acts: Dict[str, Activation] = {"tanh": torch.tanh, "relu": torch.relu, "swish": F.silu, "silu": F.silu,
                                   "elu": F.elu, "linear": lambda x: x}

    def tensors(arrays: List[np.ndarray]) -> List[torch.Tensor]:
        return [torch.as_tensor(np.ascontiguousarray(a)) for a in arrays]

    def dense_list(layers: Sequence[Dense]) -> List[Tuple[torch.Tensor, torch.Tensor, Activation]]:
        return [(torch.as_tensor(np.ascontiguousarray(d.weight)), torch.as_tensor(np.ascontiguousarray(d.bias)),
                 acts[d.activation]) for d in layers]

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.towers = [(dense_list(t.layers), tensors([t.lstm.w_ih, t.lstm.w_hh, t.lstm.b_ih, t.lstm.b_hh]) if t.lstm else None)
                           for t in ([net.actor] + ([net.critic] if net.critic is not None else []))]
            self.pi, self.vf = dense_list(net.pi), dense_list(net.vf)
            if flt is not None:  # RLlib's MeanStdFilter: float64 arithmetic, float32 result
                self.mean = torch.as_tensor(np.asarray(flt.mean, np.float64))
                self.denom = torch.as_tensor((flt.std() + SMALL_NUMBER).astype(np.float64))

        def tower(self, k: int, x: torch.Tensor, state: Sequence[torch.Tensor]
                  ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
            """(features, state out: [h, c], or [] without an LSTM) of encoder ``k`` on ``x``."""
            layers, lstm = self.towers[k]
            for w, b, act in layers:
                x = act(F.linear(x, w, b))
            if lstm is None:
                return x, []
            h, c = state
            gates = F.linear(x, lstm[0], lstm[2]) + F.linear(h, lstm[1], lstm[3])
            i, f, g, o = torch.chunk(gates, 4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return h, [h, c]

        def forward(self, obs: torch.Tensor, *rest: torch.Tensor) -> Tuple[torch.Tensor, ...]:
            mask, state = (rest[0], rest[1:]) if policy.masked else (None, rest)
            x = obs
            if flt is not None:
                x = x.double()
                if flt.demean:
                    x = x - self.mean
                if flt.destd:
                    x = x / self.denom
                if flt.clip:
                    x = torch.clamp(x, -flt.clip, flt.clip)
                x = x.float()
            features, states = self.tower(0, x, state[:2])
            critic = features
            if net.critic is not None:
                critic, s_critic = self.tower(1, x, state[2:4])
                states += s_critic
            for w, b, act in self.pi:
                features = act(F.linear(features, w, b))
            dist = features
            if mask is not None:
                dist = dist + torch.clamp(torch.log(mask), min=FLOAT_MIN)
            if net.distribution != CATEGORICAL:
                mean, log_std = torch.chunk(dist, 2, dim=-1)
                if net.log_std_clip is not None:
                    log_std = torch.clamp(log_std, -net.log_std_clip, net.log_std_clip)
                dist = torch.cat([mean, log_std], dim=-1)
                greedy = mean
            else:
                greedy = torch.argmax(dist, dim=-1)
            for w, b, act in self.vf:
                critic = act(F.linear(critic, w, b))
            return (dist, greedy, critic[..., 0], *states)

    return Graph().eval()
