"""No PRNG key is consumed twice (purerl.core.streams).

Every key that reaches JAX's random primitives is recorded, inside jit, vmap, scan and shard_map alike:
a key passed to ``random_bits`` (every sampler) or to ``split`` is consumed; a key passed to ``fold_in`` is a
stream that may be folded with many indices but must then never be split or sampled. Each method runs as
the CLI runs it (PPO, GRPO, SAC, and every language-model method, evaluation included) under the recorder.
"""

import contextlib
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from preference_rows import sentiment_pairs

from purerl.control.bc import BCConfig
from purerl.control.dagger import DAggerConfig
from purerl.control.grpo import GRPOConfig
from purerl.control.pbrl import PbRLConfig
from purerl.control.ppo import PPOConfig
from purerl.control.sac import SACConfig
from purerl.io.lm_align import run_method, run_pairs
from purerl.io.lm_sft import run_sft
from purerl.io.run import run_seeds
from purerl.lm.dpo import DPOConfig
from purerl.lm.grpo import LMGRPOConfig
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.preference_data import PairsConfig, save_pairs
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig

try:  # jax 0.10: jax/_src/random/prng.py; earlier: jax/_src/prng.py
    from jax._src.random import prng as prng_module
except ImportError:  # pragma: no cover
    from jax._src import prng as prng_module


class KeyLog:
    """What the random primitives were given: consumed keys (``random_bits``, ``split``) and folded ones."""

    def __init__(self) -> None:
        self.consumed: Counter = Counter()
        self.folded: Counter = Counter()  # (key, data)

    def consume(self, data: np.ndarray) -> None:
        for row in np.asarray(data).reshape(-1, data.shape[-1]):
            self.consumed[row.tobytes()] += 1

    def fold(self, data: np.ndarray, messages: np.ndarray) -> None:
        rows = np.asarray(data).reshape(-1, data.shape[-1])
        for row, message in zip(rows, np.asarray(messages).reshape(-1), strict=True):
            self.folded[(row.tobytes(), int(message))] += 1

    def problems(self) -> list[str]:
        twice = [key for key, count in self.consumed.items() if count > 1]
        fold_parents = {key for key, _ in self.folded}
        mixed = fold_parents & set(self.consumed)
        return [f"{len(twice)} keys consumed twice"] * bool(twice) + [
            f"{len(mixed)} keys both folded in and split or sampled"
        ] * bool(mixed)


@contextlib.contextmanager
def recording_keys():
    """Records every key given to the random primitives while active (traces afresh: caches are cleared)."""
    log, originals = KeyLog(), {}

    def recorded(name, original):
        def wrapper(keys, *args, **kwargs):
            data = jax.random.key_data(keys)
            if name == "random_fold_in":
                messages = jnp.broadcast_to(jnp.asarray(args[0] if args else kwargs["msgs"], jnp.uint32), keys.shape)
                jax.debug.callback(log.fold, data, messages)
            else:
                jax.debug.callback(log.consume, data)
            return original(keys, *args, **kwargs)

        return wrapper

    for name in ("random_bits", "random_split", "random_fold_in"):
        originals[name] = getattr(prng_module, name)
        setattr(prng_module, name, recorded(name, originals[name]))
    jax.clear_caches()
    try:
        yield log
    finally:
        jax.effects_barrier()
        for name, original in originals.items():
            setattr(prng_module, name, original)
        jax.clear_caches()


def test_the_recorder_finds_the_fold_in_split_collision():
    """With partitionable threefry, fold_in(k, 1) is split(k, 2)[1]: using both hands out one key twice."""
    key = jax.random.key(0)
    assert np.array_equal(
        jax.random.key_data(jax.random.fold_in(key, 1)), jax.random.key_data(jax.random.split(key)[1])
    )
    with recording_keys() as log:
        jax.random.normal(jax.random.fold_in(key, 1))
        jax.random.uniform(jax.random.split(key)[1])
    assert log.problems() == ["1 keys consumed twice", "1 keys both folded in and split or sampled"]
    with recording_keys() as log:
        streams = jax.random.split(key, 3)
        jax.jit(jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 4))))(streams)
    assert log.problems() == [] and sum(log.consumed.values()) == 4 and len(log.folded) == 3


PPO = PPOConfig(env="CartPole-v1", num_envs=2, num_steps=8, total_timesteps=2 * 8 * 3, num_minibatches=2,
                update_epochs=2, hidden_sizes=(8,), eval_episodes=3)  # fmt: skip
GRPO = GRPOConfig(env="CartPole-v1", num_updates=2, num_groups=2, group_size=2, num_minibatches=1, update_epochs=1,
                  hidden_sizes=(8,), eval_episodes=5, beta=0.04, ref_update_interval=1)  # fmt: skip
SAC = SACConfig(total_timesteps=2 * 4 * 3, num_envs=2, num_steps=4, learning_starts=8, batch_size=4, hidden_sizes=(8,),
                eval_episodes=3)  # fmt: skip


PBRL = PbRLConfig(total_timesteps=2 * 16 * 4, num_envs=2, num_steps=16, segment_length=4, queries=4, query_rounds=2,
                  heldout_pairs=2, reward_steps=2, reward_batch_size=2, hidden_sizes=(8,), reward_hidden_sizes=(8,),
                  query_selection="disagreement", teacher_rationality=1.0, label_noise=0.1,
                  eval_episodes=3)  # fmt: skip


@pytest.mark.parametrize(
    ("algorithm", "config"),
    [("ppo", PPO), ("grpo", GRPO), ("sac", SAC), ("pbrl", PBRL)],
    ids=["ppo", "grpo", "sac", "pbrl"],
)
def test_control_runs_consume_every_key_once(algorithm, config):
    # The report's case for GRPO: one update's evaluation key equalled a training key one level up.
    with recording_keys() as log:
        run_seeds(algorithm, config, num_seeds=2, show_progress=False)
    assert log.problems() == []
    # Recorded: at least every env step of every seed (the recorder sees inside the compiled chunks).
    steps = config.num_updates * config.num_steps * 2 if algorithm != "grpo" else config.num_updates * 2
    assert sum(log.consumed.values()) > steps


def test_behavioural_cloning_consumes_every_key_once(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"observations": rng.normal(size=(12, 4)).astype(np.float32), "actions": rng.integers(0, 2, 12),
              "rewards": np.ones(12, np.float32), "episode": np.repeat(np.arange(3), 4),
              "episode_returns": np.full(3, 4.0), "episode_lengths": np.full(3, 4),
              "episode_terminated": np.ones(3, bool), "episode_seeds": np.zeros(3)}  # fmt: skip
    np.savez(tmp_path / "demos.npz", **arrays)
    (tmp_path / "demos.json").write_text('{"env": "CartPole-v1", "episodes": 3}')
    config = BCConfig(demos=str(tmp_path), num_demo_episodes=2, num_updates=5, batch_size=4, eval_episodes=4)
    with recording_keys() as log:
        run_seeds("bc", config, num_seeds=2, show_progress=False)
    assert log.problems() == []
    assert sum(log.consumed.values()) > 5 * 2  # every update's minibatch key, at least


@pytest.mark.xdist_group("cartpole_expert")
def test_dagger_consumes_every_key_once(cartpole_expert):
    _, demos = cartpole_expert
    config = DAggerConfig(demos=str(demos), num_demo_episodes=1, num_updates=3, gradient_steps=4, batch_size=4,
                          hidden_sizes=(8,), eval_episodes=4)  # fmt: skip
    with recording_keys() as log:
        run_seeds("dagger", config, num_seeds=2, show_progress=False)
    assert log.problems() == []
    assert sum(log.consumed.values()) > 2 * 2 * 100  # at least every step of two rounds' episodes, both seeds


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    """A tiny SFT run and preference pairs from it, each recorded: the start of every LM method."""
    root = tmp_path_factory.mktemp("streams")
    logs = {}
    small = {"steps": 3, "eval_every": 3, "eval_prompts": 8, "samples_shown": 0}
    with recording_keys() as logs["sft"]:
        run_sft(SFTConfig(task="sentiment", warmup_steps=1, **small), root / "sft")
    with recording_keys() as logs["pairs"]:
        run_pairs(PairsConfig(init=str(root / "sft"), prompts=64, temperatures=(1.0, 1.5)), root / "pairs")
    # Three steps of SFT write few pairs worth keeping: the reward model and DPO train on written ones.
    rows = sentiment_pairs(20)
    (root / "written").mkdir()
    save_pairs(rows, root / "written" / "pairs.jsonl")
    with recording_keys() as logs["rm"]:  # also the scorer of the proxy-reward PPO below
        run_method("rm", LM_METHODS["rm"](root, small), root / "rm")
    return root, small, logs


LM_METHODS = {
    "rm": lambda root, small: RewardModelConfig(
        init=str(root / "sft"), pairs=(str(root / "written"),), reference_prompts=8, **small
    ),
    "dpo": lambda root, small: DPOConfig(init=str(root / "sft"), pairs=(str(root / "written"),), **small),
    # PPO on a normalised reward-model ensemble: the task-reward PPO samples and updates with the same keys, and
    # only its scorer (deterministic) differs, so this one run covers both.
    "ppo_ensemble": lambda root, small: LMPPOConfig(
        init=str(root / "sft"),
        reward_model=(str(root / "rm"),) * 2,
        normalize_reward=True,
        ensemble_penalty=1.0,
        prompts_per_step=4,
        minibatches=2,
        **small,
    ),  # fmt: skip
    "grpo": lambda root, small: LMGRPOConfig(init=str(root / "sft"), prompts_per_step=2, group_size=2, **small),
}


@pytest.mark.xdist_group("lm_runs")  # one test worker runs every test that reads them
@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["sft", "pairs", *LM_METHODS])
def test_language_model_methods_consume_every_key_once(lm_runs, tmp_path, method):
    root, small, logs = lm_runs
    if method not in logs:
        with recording_keys() as logs[method]:
            run_method(method.split("_")[0], LM_METHODS[method](root, small), tmp_path / method)
    log = logs[method]
    assert log.problems() == [], method
    assert sum(log.consumed.values()) >= (1 if method == "rm" else 10), method  # it did record the run
