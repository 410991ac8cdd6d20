"""One ``RestoreOptions`` (issue 36 point 4): every entry point that restores takes the same
keywords, and refuses a bad one with the same error; and the config side of the error policy
(``tests/test_error_policy.py`` walks the Ray-free calls).

Imports RLlib but starts no Ray instance: each bad call is refused before an algorithm or a
checkpoint is touched. The end-to-end ``mapping=`` on the config method is in
``tests/test_migration.py`` (it needs an old-stack checkpoint).
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Dict

import pytest

from builders import stored_checkpoint

from rllib_ext import PartialAlgorithm, PartialConfig, PPOPartialConfig, RestoreOptions
from rllib_ext.errors import InvalidArgumentError
from rllib_ext.live.restore.feature import specs_of
from rllib_ext.live.restore.policies import restore_opened, restore_policies
from rllib_ext.live.serving.policy_io import add_or_replace

CKPT, _ = stored_checkpoint("new-torch")
NAMES = ("freeze", "trusted", "mapping", "filters", "agents", "training_state")

# Every entry point that restores, called with ``**options`` and nothing live: a bad option
# must be refused before the algorithm (None here) or the checkpoint is used.
ENTRY_POINTS: Dict[str, Callable[..., Any]] = {
    "restore_policies": lambda **o: restore_policies(None, CKPT, ["policy_0"], **o),
    "restore_opened": lambda **o: restore_opened(None, None, None, ["policy_0"], **o),
    "algo.restore": lambda **o: PartialAlgorithm.restore(None, CKPT, policies=["policy_0"], **o),
    "algo.load_policy": lambda **o: PartialAlgorithm.load_policy(None, "unused", **o),
    "add_or_replace": lambda **o: add_or_replace(None, "unused", **o),
    "config.restore_policies": lambda **o: PPOPartialConfig().restore_policies(CKPT, ["policy_0"], **o),
    "config['restore_policies']": lambda **o: PPOPartialConfig().update_from_dict(
        {"restore_policies": {"checkpoint": CKPT, "policies": ["policy_0"], **o}}),
}
SIGNATURES = {
    "restore_policies": restore_policies,
    "restore_opened": restore_opened,
    "algo.restore": PartialAlgorithm.restore,
    "algo.load_policy": PartialAlgorithm.load_policy,
    "add_or_replace": add_or_replace,
    "config.restore_policies": PartialConfig.restore_policies,  # type: ignore[attr-defined]
}
BAD_VALUES = [
    ({"freeze": "yes"}, "restore option freeze='yes': expected True or False"),
    ({"training_state": None}, "restore option training_state=None: expected True or False"),
    ({"filters": 2}, "restore option filters=2: expected True or False"),
    ({"mapping": 3}, "restore option mapping=3: expected None, a dict {old tensor name: new name or None} "
                     "or a callable (old weights -> new weights)"),
    ({"agents": ["agent_0"]}, "restore option agents=['agent_0']: expected None or a dict {target agent: source agent}"),
]


def test_the_options_are_declared_once_with_their_defaults():
    assert RestoreOptions.names() == NAMES
    assert RestoreOptions().keywords() == {"freeze": False, "trusted": False, "mapping": None, "filters": True,
                                           "agents": None, "training_state": False}
    source = inspect.getsource(RestoreOptions)
    assert all(re.search(rf"^    {n}: .*\n    \"\"\"\S", source, re.M) for n in NAMES)  # each field says why


@pytest.mark.parametrize("name", SIGNATURES)
def test_every_entry_point_takes_the_options_as_keywords_built_through_restore_options(name):
    params = inspect.signature(SIGNATURES[name]).parameters
    assert not set(params) & set(NAMES), f"{name} declares options itself"
    assert [p.name for p in params.values() if p.kind is p.VAR_KEYWORD] == ["options"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("options,message", BAD_VALUES, ids=[next(iter(o)) for o, _ in BAD_VALUES])
def test_a_bad_option_is_the_same_error_from_every_entry_point(entry, options, message):
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$") as e:
        ENTRY_POINTS[entry](**options)
    assert type(e.value) is InvalidArgumentError


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if e != "config['restore_policies']"])
def test_an_unknown_option_is_named_with_what_is_allowed(entry):
    message = ("unknown restore option 'freez'; allowed: freeze, trusted, mapping, filters, agents, training_state "
               "(did you mean 'freeze'?)")
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
        ENTRY_POINTS[entry](freez=True)


def test_the_config_method_and_its_plain_dict_key_keep_every_option():
    """The same six options reach the spec that runs in ``setup``, ``mapping=`` included."""
    options = {"freeze": True, "trusted": False, "mapping": {"a": "b"}, "filters": False,
               "agents": {"agent_0": "agent_0"}, "training_state": True}
    want = [{"checkpoint": CKPT, "policies": {"policy_0": "hero"}, **options}]

    by_method = PPOPartialConfig().restore_policies(CKPT, {"policy_0": "hero"}, **options)
    by_dict = PPOPartialConfig().update_from_dict(
        {"restore_policies": {"checkpoint": CKPT, "policies": {"policy_0": "hero"}, **options}})

    assert specs_of(by_method) == want
    assert specs_of(by_dict) == want


def test_restore_without_policies_refuses_what_only_a_partial_restore_does():
    for options, message in [({"freeze": True}, "freeze=True needs policies=[...] (which policies to freeze?)"),
                             ({"mapping": {}}, "mapping= needs policies=[...] (which policies to convert?)")]:
        with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
            PartialAlgorithm.restore(None, CKPT, **options)


# ---------------------------------------------------------------- the config side of the error policy
ALLOWED_KEYS = "checkpoint, policies, freeze, trusted, mapping, filters, agents, training_state"
CONFIG_BAD_CALLS = [
    ("restore_policies-no-checkpoint", lambda tmp: PPOPartialConfig().update_from_dict(
        {"restore_policies": {"policies": ["policy_0"]}}),
     f"'restore_policies': a restore needs checkpoint; given: policies; allowed: {ALLOWED_KEYS}"),
    ("restore_policies-empty", lambda tmp: PPOPartialConfig().update_from_dict({"restore_policies": [{}]}),
     f"'restore_policies': a restore needs checkpoint and policies; given: no key; allowed: {ALLOWED_KEYS}"),
    ("restore_policies-not-a-dict", lambda tmp: PPOPartialConfig().update_from_dict({"restore_policies": 5}),
     f"'restore_policies': a restore is a dict with the keys {ALLOWED_KEYS} (or a list of such dicts), got 5"),
    ("restore_policies-unknown-key", lambda tmp: PPOPartialConfig().update_from_dict(
        {"restore_policies": {"checkpoint": CKPT, "policies": ["policy_0"], "freez": True}}),
     f"unknown key(s) in 'restore_policies': freez; allowed: {ALLOWED_KEYS} (did you mean 'freeze'?)"),
    ("population-every", lambda tmp: PPOPartialConfig().population(tmp, policies=["policy_0"], every="x"),
     "population(every='x'): every must be an int"),
    ("population-quantile", lambda tmp: PPOPartialConfig().population(tmp, policies=["policy_0"], quantile="low"),
     "population(quantile='low'): quantile must be a number"),
    ("league-pool", lambda tmp: PPOPartialConfig().league(123, of="main", slots=["opponent"]),
     "pool 123: expected a str or os.PathLike, got int"),
]


@pytest.mark.parametrize("call,message", [c[1:] for c in CONFIG_BAD_CALLS], ids=[c[0] for c in CONFIG_BAD_CALLS])
def test_a_bad_config_argument_raises_invalid_argument_error_with_the_exact_message(tmp_path, call, message):
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$") as e:
        call(str(tmp_path / "pool"))
    assert type(e.value) is InvalidArgumentError
    assert not (tmp_path / "pool").exists()
