"""DAgger (Ross, Gordon and Bagnell 2011, "A reduction of imitation learning and structured prediction to no-regret
online learning", algorithm 3.1): the expert labels the states the learner visits, so the learner is trained
on its own state distribution instead of the expert's alone, the known answer to behavioural cloning's
compounding error.

One update is one DAgger round:

- round 0 fits the seed's demonstrations, exactly as BC does (``purerl.control.bc``: the same episodes, the
  same observation statistics, the same loss);
- each round r >= 1 first plays ``episodes_per_round`` whole episodes with the learner, executing instead the
  expert's action with probability beta**r at each step (Ross et al.'s mixture policy with beta_i = p^(i-1);
  beta = 0, the default, is the learner alone, the variant they found best), has the expert label every state
  visited (each label one expert query), adds the labelled states to the data and takes ``gradient_steps``
  Adam steps on batches drawn uniformly from all the data so far (aggregation). The policy is trained on
  (warm-started), not refitted from scratch.

The expert is a finished purerl run (by default the one that wrote the demonstrations) at one of its seeds; its
labels are the kind its demonstrations hold: sampled actions, or its mode if they were collected with
``--greedy``. Observations are standardised by the statistics of all the data so far (round 0: BC's), renewed
each round before the fit. Streams: ``init`` as BC's;
round r's episodes, mixture coins and labels from ``step_key(rollout, r)``; its batches from
``step_key(minibatch, r)``.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purerl.control import bc
from purerl.control.demonstrations import load_demos
from purerl.control.envs import RunningMeanStd, vec_env
from purerl.control.evaluation import play_episodes, select_seed
from purerl.core.config import at_least, doc, in_range, non_negative, optional, positive
from purerl.core.files import file_stamps
from purerl.core.streams import Streams, step_key


@dataclass(frozen=True)
class DAggerConfig(bc.BCConfig):
    """DAgger's settings: BC's (round 0 is BC on the demonstrations), the rounds and the expert."""

    num_updates: int = doc(
        8, "DAgger rounds (an update is a round): round 0 is BC on the demonstrations",
        at_least(2, "(round 0 is BC on the demonstrations; for BC alone: purerl train bc)"),
    )  # fmt: skip
    gradient_steps: int = doc(500, "Adam steps per round on batches drawn from all the data so far", positive)
    episodes_per_round: int = doc(1, "learner episodes per round r >= 1, every state labelled by the expert", positive)
    beta: float = doc(
        0.0, "round r executes the expert's action with probability beta**r (0: the learner alone)", in_range(0, 1),
        sweepable=True,
    )  # fmt: skip
    expert: str = doc("", "the expert's finished run directory (default: the run that wrote --demos)")
    expert_seed_index: int | None = doc(
        None, "the expert's seed in that run (default: the first seed the demonstrations came from, or 0 of --expert)",
        optional(non_negative),
    )  # fmt: skip

    def validate(self) -> None:
        super().validate()
        expert_config = load_expert(*self.expert_source)[2]
        if expert_config.env != self.env:
            raise ValueError(f"the expert {self.expert_source[0]} learnt {expert_config.env}, not {self.env}")

    @property
    def expert_source(self) -> tuple[str, int]:
        """The expert's run directory and seed: those given, else the demonstrations'."""
        meta = load_demos(self.demos)[1]
        expert = meta.get("expert", {})
        run_dir = self.expert or expert.get("run_dir", "")
        if not run_dir:
            raise ValueError(f"--demos {self.demos} does not say which run wrote them; name the expert: --expert RUN")
        if self.expert_seed_index is not None:
            return run_dir, self.expert_seed_index
        return run_dir, 0 if self.expert else expert.get("seeds", [0])[0]

    @property
    def expert_greedy(self) -> bool:
        """The expert labels with its mode if its demonstrations were collected with ``--greedy``."""
        return bool(load_demos(self.demos)[1].get("expert", {}).get("greedy", False))

    @property
    def inputs(self) -> dict[str, str]:
        """BC's, and the expert's trained state (its parameters: ``purerl.io.checkpoints.state_digest``), so that
        a resume notices an expert trained again with another config or seed in the same directory."""
        run_dir, seed_index = self.expert_source
        return super().inputs | {f"expert {run_dir} seed {seed_index}": expert_digest(run_dir, seed_index)}

    @property
    def learner_rows(self) -> int:
        """Rows of the learner's data: every step of every round r >= 1 (``max_steps`` per episode)."""
        return (self.num_updates - 1) * self.episodes_per_round * self.spec.max_steps_in_episode


def load_expert(run_dir: str, seed_index: int) -> tuple[Any, Any, Any]:
    """``(policy, state, config)`` of seed ``seed_index`` of the finished run in ``run_dir``: ``policy(state, obs)``
    is its algorithm's action distribution at raw observations. Read once per process while the run's files are
    unchanged; the state is a constant of the compiled program, like the demonstrations. One-line
    ``ValueError`` for a run that cannot serve or a seed it lacks."""
    return _read_expert(run_dir, seed_index, expert_stamps(run_dir))[:3]


def expert_digest(run_dir: str, seed_index: int) -> str:
    """SHA-256 of that seed's trained state (``purerl.io.checkpoints.state_digest``)."""
    return _read_expert(run_dir, seed_index, expert_stamps(run_dir))[3]


def expert_stamps(run_dir: str) -> tuple[tuple[int, int], ...]:
    """A run trained again in the same directory rewrites both files before it trains."""
    return file_stamps(Path(run_dir) / "config.json", Path(run_dir) / "run.json")


@cache
def _read_expert(run_dir: str, seed_index: int, stamps: tuple) -> tuple[Any, Any, Any, str]:
    # The run-directory format belongs to the I/O layer, which imports this module: imported when first used.
    from purerl.io.checkpoints import state_digest
    from purerl.io.run import ALGORITHMS
    from purerl.io.run_dir import load_trained_state

    algorithm, config, settings, states = load_trained_state(Path(run_dir), flag="the expert")
    if not 0 <= seed_index < settings.num_seeds:
        raise ValueError(f"--expert-seed-index {seed_index}: the expert run has seeds 0..{settings.num_seeds - 1}")
    state = select_seed(states, seed_index)
    return ALGORITHMS[algorithm].policy, state, config, state_digest(state)


class DAggerState(NamedTuple):
    """One seed's run: BC's fields (``train_state``, ``step_weights``, ``obs_stats``, ``streams``, ``config``),
    then the learner's labelled states, slot r - 1 holding round r's ``episodes_per_round * max_steps`` steps
    (time-major), and the counts."""

    train_state: TrainState
    step_weights: jax.Array  # float32 [N]: BC's weights of the demonstration steps (the seed's episodes)
    obs_stats: RunningMeanStd
    streams: Streams
    config: DAggerConfig
    learner_obs: jax.Array  # float32 [L, obs_dim], L = config.learner_rows
    learner_actions: jax.Array  # the expert's labels: int32 [L] or float32 [L, A]
    learner_rows_used: jax.Array  # bool [L]: the row holds a visited state (a step of a round's episode)
    env_steps: jax.Array  # int32: the learner's env steps so far
    expert_queries: jax.Array  # int32: states the expert has labelled so far


def init(key: jax.Array, config: DAggerConfig) -> DAggerState:
    """BC's ``init`` (policy, the seed's episodes, their statistics) and an empty learner dataset."""
    start = bc.init(key, config)
    spec, rows = config.spec, config.learner_rows
    actions = jnp.zeros(rows, jnp.int32) if spec.discrete else jnp.zeros((rows, spec.action_dim), jnp.float32)
    zero = jnp.asarray(0, jnp.int32)
    empty = jnp.zeros((rows, spec.obs_dim), jnp.float32)
    return DAggerState(*start, empty, actions, jnp.zeros(rows, bool), zero, zero)


class ExpertMixture(NamedTuple):
    """Ross et al.'s mixture policy beta * expert + (1 - beta) * learner as ``play_episodes`` uses a
    distribution: ``sample`` executes the expert's action (its label: mode or sample) with probability ``beta``
    at each step, else the learner's sample."""

    learner: distrax.Distribution
    expert: distrax.Distribution
    beta: jax.Array
    expert_greedy: bool

    def sample(self, seed: jax.Array) -> jax.Array:
        coin_key, expert_key, learner_key = jax.random.split(seed, 3)
        learner = self.learner.sample(seed=learner_key)
        expert = self.expert.mode() if self.expert_greedy else self.expert.sample(seed=expert_key)
        use_expert = jax.random.uniform(coin_key, learner.shape[:1]) < self.beta
        return jnp.where(use_expert.reshape(-1, *(1,) * (learner.ndim - 1)), expert, learner)


def expert_labels(config: DAggerConfig, obs: jax.Array, key: jax.Array) -> jax.Array:
    """The expert's action at each of ``obs [N, obs_dim]`` (raw), clipped to the box for continuous actions,
    as its demonstrations' actions are."""
    policy, state, _ = load_expert(*config.expert_source)
    dist = policy(state, obs)
    labels = dist.mode() if config.expert_greedy else dist.sample(seed=key)
    spec = config.spec
    return labels if spec.discrete else jnp.clip(labels, spec.action_low, spec.action_high)


def play_and_label(state: DAggerState, index: jax.Array) -> tuple[DAggerState, dict[str, jax.Array]]:
    """Round ``index`` >= 1: the learner's (mixture's) episodes, every visited state labelled by the expert and
    written to slot ``index - 1``."""
    config, spec = state.config, state.config.spec
    play_key, label_key = jax.random.split(step_key(state.streams.rollout, index))
    policy, expert_state, _ = load_expert(*config.expert_source)
    beta = config.beta**index

    def mixture(obs: jax.Array) -> ExpertMixture:
        learner = bc.policy(state, obs)
        return ExpertMixture(learner, policy(expert_state, obs), beta, config.expert_greedy)

    box = None if spec.discrete else (spec.action_low, spec.action_high)
    env = vec_env(config.env, config.episodes_per_round)
    played = play_episodes(mixture, env, play_key, spec.max_steps_in_episode, record=True, action_box=box)
    obs = played["observations"].reshape(-1, spec.obs_dim)  # [T * E, obs_dim], time-major
    used = played["active"].reshape(-1)
    labels = expert_labels(config, obs, label_key)
    learner_mode = bc.policy(state, obs).mode()
    if spec.discrete:
        agreement = jnp.sum((learner_mode == labels) * used) / used.sum()
    else:
        agreement = jnp.sum(((learner_mode - labels) ** 2).sum(axis=-1) * used) / used.sum()
    offset = (index - 1) * obs.shape[0]  # slot index - 1

    def write(rows: jax.Array, new: jax.Array) -> jax.Array:
        return jax.lax.dynamic_update_slice_in_dim(rows, new.astype(rows.dtype), offset, 0)

    steps = used.sum(dtype=jnp.int32)
    state = state._replace(
        learner_obs=write(state.learner_obs, obs),
        learner_actions=write(state.learner_actions, labels),
        learner_rows_used=write(state.learner_rows_used, used),
        env_steps=state.env_steps + steps,
        expert_queries=state.expert_queries + steps,
    )
    name = "expert_agreement" if spec.discrete else "expert_action_mse"
    return state, {"episode_return": played["returns"].mean(), "episode_length": played["lengths"].mean(),
                   name: agreement}  # fmt: skip


def no_episodes(state: DAggerState, index: jax.Array) -> tuple[DAggerState, dict[str, jax.Array]]:
    """Round 0: BC on the demonstrations alone; nothing played (NaN where play_and_label measures)."""
    nan = jnp.asarray(jnp.nan, jnp.float32)
    name = "expert_agreement" if state.config.spec.discrete else "expert_action_mse"
    return state, {"episode_return": nan, "episode_length": nan, name: nan}


def update(state: DAggerState, index: jax.Array) -> tuple[DAggerState, dict[str, jax.Array]]:
    """DAgger round ``index``: (from round 1) play, label and aggregate; then ``gradient_steps`` Adam steps on
    batches drawn uniformly with replacement from the seed's demonstration steps and every labelled state."""
    config = state.config
    state, played = jax.lax.cond(index > 0, play_and_label, no_episodes, state, index)
    demos = bc.demonstrations(config)
    num_demo_rows = state.step_weights.shape[0]
    demo_weights, learner_weights = (
        (state.step_weights > 0).astype(jnp.float32),
        state.learner_rows_used.astype(jnp.float32),
    )
    weights = jnp.concatenate([demo_weights, learner_weights])
    # The statistics of all the data so far. Frozen at the demonstrations', a feature that never varied in them
    # (a MinAtar cell the expert's episode never lit) would stay 0 to the learner however often it visits it.
    state = state._replace(
        obs_stats=RunningMeanStd.of((demos["observations"], demo_weights), (state.learner_obs, learner_weights))
    )

    def gradient_step(train_state: TrainState, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        rows = jax.random.choice(key, weights.shape[0], (config.batch_size,), p=weights)
        from_demos = rows < num_demo_rows
        demo_rows = jnp.minimum(rows, num_demo_rows - 1)
        learner_rows = jnp.maximum(rows - num_demo_rows, 0)
        obs = jnp.where(from_demos[:, None], demos["observations"][demo_rows], state.learner_obs[learner_rows])
        expand = (slice(None),) + (None,) * (demos["actions"].ndim - 1)
        actions = jnp.where(from_demos[expand], demos["actions"][demo_rows], state.learner_actions[learner_rows])
        return bc.gradient_step(train_state, config, state.obs_stats, obs, actions)

    keys = jax.random.split(step_key(state.streams.minibatch, index), config.gradient_steps)
    train_state, fitted = jax.lax.scan(gradient_step, state.train_state, keys)
    metrics = jax.tree.map(jnp.mean, fitted) | played  # the round's mean loss, accuracy, ...
    metrics |= {
        "env_steps": state.env_steps,
        "expert_queries": state.expert_queries,
        "dataset_size": (weights > 0).sum(dtype=jnp.int32),
    }
    return state._replace(train_state=train_state), metrics


def make_train(config: DAggerConfig):
    """``train(key, config=config) -> (DAggerState, metrics)``: ``init`` then a ``lax.scan`` of rounds."""

    def train(key: jax.Array, config: DAggerConfig = config) -> tuple[DAggerState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, config), jnp.arange(config.num_updates))

    return train


policy = bc.policy  # the learner is BC's policy, standardised by the statistics its last round fitted with
evaluate = bc.evaluate
