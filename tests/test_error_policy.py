"""One error policy (STYLE.md 16): an argument mistake is ``InvalidArgumentError``, a data
problem its own typed class, and no bare ``ValueError``/``TypeError``/``RuntimeError``
reaches a user.

Two proofs, both Ray-free:

* statically, an AST walk over ``rllib_ext/``: no ``raise ValueError(...)``,
  ``raise TypeError(...)`` or ``raise RuntimeError(...)`` is left, except where a ``try``
  around it catches it on the spot, or :data:`INTERNAL` says why no user can meet it (the
  rule is run on planted violations too);
* by calling the Ray-free public surface with bad arguments (:data:`BAD_CALLS`): each call
  raises its class with the exact message, which names the argument, what was given and
  what fits. (The Ray side: ``tests/test_restore.py``, ``tests/test_migration.py`` and, for the
  config methods and their plain-dict keys, ``tests/test_restore_options.py``.)
"""

from __future__ import annotations

import ast
import os
import re
import types
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Tuple

import numpy as np
import pytest

from builders import POOL_WEIGHTS, pool_files, pool_policy_dir, stored_checkpoint

import rllib_ext
from rllib_ext import errors
from rllib_ext.errors import InvalidArgumentError, MetaStrategyError, PolicyNotFoundError, RecurrentStateError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it

ROOT = os.path.dirname(os.path.abspath(rllib_ext.__file__))
BARE = ("ValueError", "TypeError", "RuntimeError")

# (module path under rllib_ext/, function) -> why its bare raise never reaches a user.
INTERNAL: Dict[Tuple[str, str], str] = {
    ("checkpoint/lazy.py", "_latin1_from_utf8"):
        "numpy's own words for tensor text of the wrong length; LazyArray.materialize's malformed() "
        "(and the reader's, when a pickle is decoded) turn them into a CheckpointFormatError naming the file",
    ("checkpoint/lazy.py", "LazyArray.__init__"):
        "np.frombuffer's words, raised while a pickle or msgpack file is decoded inside malformed(): "
        "a CheckpointFormatError naming the file",
    ("checkpoint/codecs/msgpack.py", "_MsgpackWalker.document"):
        "inside decode_msgpack's malformed(): a CheckpointFormatError naming the file",
    ("checkpoint/codecs/msgpack.py", "_MsgpackWalker.value"):
        "inside decode_msgpack's malformed(): a CheckpointFormatError naming the file",
    ("checkpoint/codecs/msgpack.py", "_MsgpackWalker.count"):
        "inside decode_msgpack's malformed(): a CheckpointFormatError naming the file",
    **{("checkpoint/codecs/msgpack.py", fn): "an array map being decoded, by the walker's hook inside unpack_msgpack's "
       "malformed(): a CheckpointFormatError naming the file"
       for fn in ("_decode_msgpack_numpy", "_raw", "_shape", "_msgpack_dtype")},
    ("checkpoint/codecs/safe_pickle.py", "SafeUnpickler._load_build"):
        "lazy tensors exist only under the reader's malformed(): a CheckpointFormatError naming the file",
    ("checkpoint/optimizer_data.py", "plain_value"):
        "training_state catches it: a MissingTrainingStateError naming the file",
    **{("pool/journal.py", fn): "a JSON value of a journal's base or record being read, inside the journal's "
       "malformed(): a CheckpointFormatError naming the file"
       for fn in ("json_object", "json_list", "json_int", "json_number", "json_str")},
    ("pool/table.py", "PayoffKind.load"):
        "a journal's base or record being read, inside the journal's malformed(): a CheckpointFormatError naming the file",
    ("pool/table.py", "checked_rows"):
        "stored rows being read, inside the journal's (or parse_games') malformed(): a CheckpointFormatError naming the file",
    ("pool/table.py", "parse_games"):
        "inside its own malformed(): a CheckpointFormatError naming what was being restored",
}


def _sources() -> Dict[str, str]:
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(d, f)
                out[os.path.relpath(path, ROOT).replace(os.sep, "/")] = open(path).read()
    return out


SOURCES = _sources()


def _handled(handlers: List[ast.ExceptHandler]) -> FrozenSet[str]:
    """The class names the ``except`` clauses of one ``try`` catch (``*`` for a bare ``except:``)."""
    names = set()
    for h in handlers:
        kinds = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        for k in kinds:
            names.add("*" if k is None else k.id if isinstance(k, ast.Name) else getattr(k, "attr", "?"))
    return frozenset(names)


def _walk(node: ast.AST, scope: List[str], caught: FrozenSet[str], out: List[Tuple[str, int, str]]) -> None:
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in BARE and not caught & {exc.id, "Exception", "BaseException", "*"}:
            out.append((".".join(scope) or "<module>", node.lineno, exc.id))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        scope, caught = scope + [node.name], frozenset()  # its body runs later, outside any try around the def
    elif isinstance(node, ast.Lambda):
        caught = frozenset()
    if isinstance(node, ast.Try):
        for stmt in node.body:
            _walk(stmt, scope, caught | _handled(node.handlers), out)
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            _walk(part, scope, caught, out)
        return
    for child in ast.iter_child_nodes(node):
        _walk(child, scope, caught, out)


def bare_raises(sources: Mapping[str, str]) -> List[Tuple[str, str, int, str]]:
    """``(module, function, line, class)`` of every bare raise no ``try`` around it catches."""
    found: List[Tuple[str, str, int, str]] = []
    for module, source in sorted(sources.items()):
        hits: List[Tuple[str, int, str]] = []
        _walk(ast.parse(source), [], frozenset(), hits)
        found += [(module, function, line, cls) for function, line, cls in hits]
    return found


def unexplained(sources: Mapping[str, str]) -> List[str]:
    return [f"rllib_ext/{m}:{line}: raise {cls} in {fn}" for m, fn, line, cls in bare_raises(sources)
            if (m, fn) not in INTERNAL]


def test_no_bare_valueerror_typeerror_runtimeerror_is_raised():
    assert unexplained(SOURCES) == [], "raise InvalidArgumentError (an argument) or a typed error (errors.py)"


def test_every_internal_exception_is_still_there():
    """No stale excuse: each :data:`INTERNAL` entry still raises, and says why."""
    found = {(m, fn) for m, fn, _, _ in bare_raises(SOURCES)}
    assert sorted(set(INTERNAL) - found) == []
    assert all(len(why) > 40 for why in INTERNAL.values())


PLANTED = [
    ("pool/rules.py", "def planted(x):\n    raise ValueError(f'x={x}')\n", True),
    ("pool/rules.py", "def planted():\n    raise TypeError\n", True),
    ("act/nets.py", "class Planted:\n    def m(self):\n        raise RuntimeError('no')\n", True),
    ("pool/rules.py", "def planted():\n    try:\n        pass\n    except KeyError:\n        raise ValueError('x')\n", True),
    ("pool/rules.py", "def planted():\n    try:\n        def later():\n            raise ValueError('x')\n"
                      "    except ValueError:\n        pass\n", True),
    ("checkpoint/reader.py", "def _latin1_from_utf8():\n    raise ValueError('excused in lazy.py only')\n", True),
    ("pool/rules.py", "def planted():\n    try:\n        raise ValueError('x')\n    except (KeyError, ValueError):\n"
                      "        pass\n", False),
    ("pool/rules.py", "def planted():\n    try:\n        raise TypeError('x')\n    except Exception:\n        pass\n", False),
    ("pool/rules.py", "def planted():\n    raise InvalidArgumentError('planted(x=1): x must be 0')\n", False),
]


@pytest.mark.parametrize("module,planted,flagged", PLANTED, ids=[f"{m}-{k}" for k, (m, _, _) in enumerate(PLANTED)])
def test_the_rule_sees_a_planted_bare_raise(module, planted, flagged):
    sources = dict(SOURCES)
    sources[module] = sources[module] + "\n\n" + planted
    new = [u for u in unexplained(sources) if "planted" in u.lower() or "_latin1_from_utf8" in u]
    assert bool(new) == flagged, new


# ---------------------------------------------------------------- the public surface, called wrongly
class Ctx(types.SimpleNamespace):
    """What the calls need: the committed new-stack checkpoint, a pool with two entries, a scratch dir."""


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    tmp = str(tmp_path_factory.mktemp("errors"))
    ckpt, _ = stored_checkpoint("new-torch")
    pool = rllib_ext.PolicyPool(os.path.join(tmp, "pool"), writer="w")
    src = pool_policy_dir(tmp)
    a, b = pool.add(src).id, pool.add(src).id
    policy = rllib_ext.NumpyPolicy.from_checkpoint(ckpt, "policy_0")
    return Ctx(tmp=tmp, ckpt=ckpt, pool=pool, src=src, a=a, b=b, policy=policy,
               out=os.path.join(tmp, "out"), rng=np.random.default_rng(0))


def _recurrent(c: Ctx) -> Any:
    stub = types.SimpleNamespace(recurrent=True)  # compute_action refuses before the network is used
    return rllib_ext.NumpyPolicy("lstm", stub, c.policy.observation_space, c.policy.action_space)


CKPT_AVAILABLE = "available: policy_0, policy_1, policy_2"
# (id, call, class, exact message); "<ckpt>", "<pool>" stand for the fixture's paths.
BAD_CALLS: List[Tuple[str, Callable[[Ctx], Any], type, str]] = [
    # reading and writing checkpoints
    ("inspect-path", lambda c: rllib_ext.inspect(123), InvalidArgumentError,
     "checkpoint path 123: expected a str or os.PathLike, got int"),
    ("read_weights-path", lambda c: rllib_ext.read_weights(None), InvalidArgumentError,
     "checkpoint path None: expected a str or os.PathLike, got NoneType"),
    ("policy_ids-bytes", lambda c: rllib_ext.policy_ids(b"ckpt"), InvalidArgumentError,
     "checkpoint path b'ckpt': expected a str or os.PathLike, got bytes"),
    ("read_filters-path", lambda c: rllib_ext.read_filters(7), InvalidArgumentError,
     "checkpoint path 7: expected a str or os.PathLike, got int"),
    ("read_policy_dir-path", lambda c: rllib_ext.read_policy_dir(3), InvalidArgumentError,
     "checkpoint path 3: expected a str or os.PathLike, got int"),
    ("read_weights-id", lambda c: rllib_ext.read_weights(c.ckpt, "polcy_1"), PolicyNotFoundError,
     f"policy 'polcy_1' not in <ckpt>; {CKPT_AVAILABLE} (did you mean 'policy_1'?)"),
    ("read_policy-id", lambda c: rllib_ext.read_policy(c.ckpt, "polcy_0"), PolicyNotFoundError,
     f"policy 'polcy_0' not in <ckpt>; {CKPT_AVAILABLE} (did you mean 'policy_0'?)"),
    ("extract_policy-format", lambda c: rllib_ext.extract_policy(c.ckpt, "policy_0", c.out, format="onx"),
     InvalidArgumentError, "format 'onx' is not one of safetensors, npz, torch"),
    ("extract_policy-out", lambda c: rllib_ext.extract_policy(c.ckpt, "policy_0", 3.0), InvalidArgumentError,
     "out 3.0: expected a str or os.PathLike, got float"),
    ("export_npz-path", lambda c: rllib_ext.export_npz({"w": np.zeros(2)}, 5), InvalidArgumentError,
     "path 5: expected a str or os.PathLike, got int"),
    ("write_policy_dir-meta-key", lambda c: rllib_ext.write_policy_dir(c.out, "p", POOL_WEIGHTS,
                                                                       {"stack": "new", "framwork": "torch"}),
     InvalidArgumentError, "meta key 'framwork' is not part of policy.json; allowed: stack, framework, "
     "observation_space, action_space, model_config, algorithm_class, policy_class, ray_version, source, "
     "observation_filter (did you mean 'framework'?)"),
    ("write_policy_dir-meta-stack", lambda c: rllib_ext.write_policy_dir(c.out, "p", POOL_WEIGHTS, {"stack": "newer"}),
     InvalidArgumentError, "meta['stack'] must be 'new' or 'old', got 'newer'"),
    ("write_policy_dir-path", lambda c: rllib_ext.write_policy_dir(None, "p", POOL_WEIGHTS, {"stack": "new"}),
     InvalidArgumentError, "path None: expected a str or os.PathLike, got NoneType"),
    ("FilterStats.apply-shape",
     lambda c: rllib_ext.FilterStats((4,), 2, np.zeros(4), np.ones(4)).apply(np.zeros((2, 3))), InvalidArgumentError,
     "obs of shape [2, 3] does not fit MeanStdFilter(4,) over 2 observations, no clip: observations of shape [4], "
     "or a batch of them"),
    # merge and diff
    ("merge_checkpoints-empty", lambda c: rllib_ext.merge_checkpoints(c.ckpt, [], c.out), InvalidArgumentError,
     "takes is empty: name at least one (target id, source checkpoint, source id)"),
    ("merge_checkpoints-pair", lambda c: rllib_ext.merge_checkpoints(c.ckpt, [("policy_0", c.ckpt)], c.out),
     InvalidArgumentError,
     "takes: each take is (target id, source checkpoint, source id or None), got ('policy_0', '<ckpt>')"),
    ("merge_checkpoints-twice",
     lambda c: rllib_ext.merge_checkpoints(c.ckpt, [("policy_0", c.ckpt, None), ("policy_0", c.ckpt, "policy_1")], c.out),
     InvalidArgumentError, "policy 'policy_0' is taken twice"),
    ("merge_checkpoints-source", lambda c: rllib_ext.merge_checkpoints(c.ckpt, [("policy_0", 7, None)], c.out),
     InvalidArgumentError, "source checkpoint 7: expected a str or os.PathLike, got int"),
    ("merge_checkpoints-out", lambda c: rllib_ext.merge_checkpoints(c.ckpt, [("policy_0", c.ckpt, None)], 7),
     InvalidArgumentError, "out 7: expected a str or os.PathLike, got int"),
    ("merge_checkpoints-target", lambda c: rllib_ext.merge_checkpoints(c.ckpt, [("polcy_0", c.ckpt, "policy_0")], c.out),
     PolicyNotFoundError, f"policy 'polcy_0' not in the base <ckpt>; {CKPT_AVAILABLE} (did you mean 'policy_0'?)"),
    ("diff_checkpoints-path", lambda c: _diff(c.ckpt, 5), InvalidArgumentError,
     "checkpoint path 5: expected a str or os.PathLike, got int"),
    # acting
    ("NumpyPolicy.from_checkpoint-id", lambda c: rllib_ext.NumpyPolicy.from_checkpoint(c.ckpt, "polcy_0"),
     PolicyNotFoundError, f"policy 'polcy_0' not in <ckpt>; {CKPT_AVAILABLE} (did you mean 'policy_0'?)"),
    ("NumpyPolicy.forward-obs", lambda c: c.policy.forward(np.zeros((2, 3))), InvalidArgumentError,
     "policy 'policy_0': obs must be a batch of observations of shape [B, 4], got [2, 3]"),
    ("NumpyPolicy.compute_actions-obs", lambda c: c.policy.compute_actions(np.zeros(4)), InvalidArgumentError,
     "policy 'policy_0': obs must be a batch of observations of shape [B, 4], got [4]"),
    ("NumpyPolicy.compute_action-obs", lambda c: c.policy.compute_action(np.zeros(3)), InvalidArgumentError,
     "policy 'policy_0': obs must be a batch of observations of shape [B, 4], got [1, 3]"),
    ("NumpyPolicy.compute_action-recurrent", lambda c: _recurrent(c).compute_action(np.zeros(4)), RecurrentStateError,
     "policy 'lstm' is recurrent: call compute_actions(obs_batch, state)"),
    # the pool
    ("PolicyPool-path", lambda c: rllib_ext.PolicyPool(path=123), InvalidArgumentError,
     "pool path 123: expected a str or os.PathLike, got int"),
    ("PolicyPool-writer", lambda c: rllib_ext.PolicyPool(c.pool.path, writer="a/b"), InvalidArgumentError,
     "writer 'a/b': use 1-100 letters, digits, '_', '.', '-' (not starting with '.')"),
    ("PolicyPool.add-iteration", lambda c: c.pool.add(c.src, iteration=-1), InvalidArgumentError,
     "iteration must be a non-negative int or None, got -1"),
    ("PolicyPool.add-env_steps", lambda c: c.pool.add(c.src, env_steps=1.5), InvalidArgumentError,
     "env_steps must be a non-negative int or None, got 1.5"),
    ("PolicyPool.add-meta", lambda c: c.pool.add(c.src, meta={"x": object()}), InvalidArgumentError,
     "meta must be plain JSON data (str keys, numbers, strings, lists): Object of type object is not JSON serializable"),
    ("PolicyPool.prune-key", lambda c: c.pool.prune({"lats": 3}), InvalidArgumentError,
     "keep: unknown key(s) lats; a retention rule takes last= and every="),
    ("PolicyPool.prune-type", lambda c: c.pool.prune(5), InvalidArgumentError,
     "keep must be a Retention or a dict with last=/every=, got int"),
    ("Retention-last", lambda c: rllib_ext.Retention(last=0), InvalidArgumentError,
     "Retention(last=0): a positive int or None"),
    ("Retention-empty", lambda c: rllib_ext.Retention(), InvalidArgumentError,
     "Retention() keeps nothing: give last=N and/or every=K (remove() deletes one entry)"),
    ("PolicyPool.record-count", lambda c: c.pool.record([rllib_ext.Outcome(c.a, wins=-1)]), InvalidArgumentError,
     "outcome for snapshot 'main-0000@w': wins=-1, expected a non-negative int"),
    ("PolicyPool.record-id", lambda c: c.pool.record([rllib_ext.Outcome("nope", wins=1)]), PolicyNotFoundError,
     "snapshot 'nope' not in the pool <pool>; available: main-0000@w, main-0001@w"),
    ("PolicyPool.record_games-self", lambda c: c.pool.record_games(c.a, c.a, return_a=0.0, return_b=0.0),
     InvalidArgumentError, "games of 'main-0000@w' against itself are not recorded: the table's diagonal stays empty"),
    ("PolicyPool.record_games-count", lambda c: c.pool.record_games(c.a, c.b, wins=-2, return_a=0.0, return_b=0.0),
     InvalidArgumentError, "games 'main-0000@w' vs 'main-0001@w': wins=-2, expected a non-negative int"),
    ("PolicyPool.record_games-return",
     lambda c: c.pool.record_games(c.a, c.b, wins=1, return_a=float("inf"), return_b=0.0), InvalidArgumentError,
     "games 'main-0000@w' vs 'main-0001@w': return_a=inf, expected a finite number (the sum over the games)"),
    ("PolicyPool.record_games-no-game", lambda c: c.pool.record_games(c.a, c.b, return_a=1.0, return_b=-1.0),
     InvalidArgumentError, "games 'main-0000@w' vs 'main-0001@w': returns 1.0, -1.0 but no game"),
    ("PolicyPool.meta_strategy-solver", lambda c: c.pool.meta_strategy(solver="nsh"), InvalidArgumentError,
     "unknown solver 'nsh'; known: nash, replicator, uniform (did you mean 'nash'?)"),
    ("PolicyPool.meta_strategy-of", lambda c: c.pool.meta_strategy(of="nobody"), PolicyNotFoundError,
     "policy 'nobody' not in the snapshots of the pool <pool>; available: main"),
    ("PolicyPool.meta_strategy_by_seat-no-seats", lambda c: c.pool.meta_strategy_by_seat(), MetaStrategyError,
     "a meta-strategy per seat needs games of the snapshots in exactly two seats; the payoff table has 0 (none): "
     "evaluation matches fill them (league(evaluation=...)); use meta_strategy() otherwise"),
    # the restore options (every entry point that restores builds one; tests/test_restore_options.py)
    ("RestoreOptions-freeze", lambda c: rllib_ext.RestoreOptions(freeze="yes"), InvalidArgumentError,
     "restore option freeze='yes': expected True or False"),
    ("RestoreOptions-agents", lambda c: rllib_ext.RestoreOptions(agents="agent_0"), InvalidArgumentError,
     "restore option agents='agent_0': expected None or a dict {target agent: source agent}"),
    ("RestoreOptions.from_keywords-unknown", lambda c: rllib_ext.RestoreOptions.from_keywords({"trusts": True}),
     InvalidArgumentError, "unknown restore option 'trusts'; allowed: freeze, trusted, mapping, filters, agents, "
     "training_state (did you mean 'trusted'?)"),
    ("sample_mixture-empty", lambda c: rllib_ext.sample_mixture({}, c.rng), InvalidArgumentError,
     "sample_mixture(mixture=...): not a mixture (non-negative probabilities, not all 0): {}"),
    ("sample_mixture-negative", lambda c: rllib_ext.sample_mixture({"a": -1.0}, c.rng), InvalidArgumentError,
     "sample_mixture(mixture=...): not a mixture (non-negative probabilities, not all 0): {'a': -1.0}"),
    ("sample_mixture-size", lambda c: rllib_ext.sample_mixture({"a": 1.0}, c.rng, size=-1), InvalidArgumentError,
     "sample_mixture(size=-1): size must be a non-negative int"),
    ("zero_sum_nash-shape", lambda c: rllib_ext.zero_sum_nash([1.0, -1.0]), InvalidArgumentError,
     "zero_sum_nash(matrix=...): an array of shape (2,); expected a non-empty 2-D table of finite numbers "
     "(the row player's payoffs)"),
    ("zero_sum_nash-nan", lambda c: rllib_ext.zero_sum_nash([[0.0, float("nan")], [1.0, 0.0]]), InvalidArgumentError,
     "zero_sum_nash(matrix=...): a value that is not finite; expected a non-empty 2-D table of finite numbers "
     "(the row player's payoffs)"),
    ("zero_sum_nash-text", lambda c: rllib_ext.zero_sum_nash([["a"]]), InvalidArgumentError,
     "zero_sum_nash(matrix=...): a list of non-numbers; expected a non-empty 2-D table of finite numbers "
     "(the row player's payoffs)"),
]


def _diff(a: Any, b: Any) -> Any:
    from rllib_ext.checkpoint.diff import diff_checkpoints  # what ``rllib-ext diff`` calls

    return diff_checkpoints(a, b)


@pytest.mark.parametrize("call,cls,message", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_a_bad_argument_raises_its_class_with_the_exact_message(ctx, call, cls, message):
    before = sorted(os.listdir(ctx.tmp)), pool_files(ctx.pool.path)
    message = message.replace("<ckpt>", ctx.ckpt).replace("<pool>", ctx.pool.path)
    with pytest.raises(cls, match=f"^{re.escape(message)}$") as e:
        call(ctx)
    assert type(e.value) is cls  # the class itself, not a relative
    if cls is InvalidArgumentError or issubclass(cls, InvalidArgumentError):
        assert isinstance(e.value, ValueError) and isinstance(e.value, TypeError)  # old except clauses still catch
    assert (sorted(os.listdir(ctx.tmp)), pool_files(ctx.pool.path)) == before  # refused before anything was written


def test_the_table_covers_the_ray_free_public_calls_that_take_arguments():
    """Each Ray-free public function or class that checks its arguments has a row above."""
    called = {c[0].split("-")[0].split(".")[0] for c in BAD_CALLS}
    expected = {"inspect", "read_weights", "policy_ids", "read_filters", "read_policy", "read_policy_dir",
                "extract_policy", "export_npz", "write_policy_dir", "FilterStats", "merge_checkpoints",
                "diff_checkpoints", "NumpyPolicy", "PolicyPool", "Retention", "sample_mixture", "RestoreOptions",
                "zero_sum_nash"}
    assert expected <= called, sorted(expected - called)
    assert expected <= set(rllib_ext.__all__) | {"diff_checkpoints"}


def test_exploitability_names_the_mixture_argument():
    pytest.importorskip("pyspiel")
    with pytest.raises(InvalidArgumentError, match="^" + re.escape(
            "exploitability(mixture=...): 3 mixtures for a game of 2 players: give one per player") + "$"):
        rllib_ext.exploitability("kuhn_poker", [{}, {}, {}])
    with pytest.raises(InvalidArgumentError, match="^" + re.escape(
            "exploitability(mixture=...): an empty mixture (no positive weight): give at least one policy a "
            "positive weight") + "$"):
        rllib_ext.exploitability("kuhn_poker", {})


def test_every_error_class_is_exported_documented_and_one_of_the_hierarchy():
    classes = {n for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, Exception)
               and c.__module__ == errors.__name__}
    assert classes <= set(rllib_ext.__all__), sorted(classes - set(rllib_ext.__all__))
    api = open(os.path.join(os.path.dirname(ROOT), "docs", "api.md")).read()
    assert [n for n in sorted(classes) if not re.search(rf"^   {n}$", api, re.M)] == []
    assert all(issubclass(getattr(errors, n), errors.CheckpointError) and getattr(errors, n).__doc__ for n in classes)
    assert issubclass(RecurrentStateError, InvalidArgumentError)  # a state= that does not fit is an argument
