"""Behavioural cloning: a policy fitted to an expert's demonstrations by maximum likelihood, evaluated in the env
exactly as PPO's policy is.

The loss is the negative log-likelihood of the expert's action under the policy (Pomerleau 1991; Ross et al.
2011, section 2): a categorical cross-entropy for discrete actions, a diagonal Gaussian's NLL for continuous
ones. The network is PPO's policy (``ActorCritic.policy``: actor torso and head, and a state-independent
log-std for continuous actions), so a BC policy and a PPO policy are the same kind of object.

Each seed draws its own ``num_demo_episodes`` episodes from the demonstrations (without replacement, from its
``init`` stream), standardises observations by the mean and variance of the steps it trains on
(``RunningMeanStd``, frozen: the policy applies them at evaluation, as PPO applies its running statistics, a
feature without spread mapped to 0), then takes ``num_updates`` Adam steps on minibatches of ``batch_size``
steps drawn uniformly with replacement from those steps (``minibatch`` stream).
The demonstrations are constants of the compiled program (``purerl.control.demonstrations``, read once).
"""

from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from purerl.control.demonstrations import ARRAYS_FILE, load_demos
from purerl.control.envs import EnvSpec, RunningMeanStd, env_spec, evaluation_env, known_env
from purerl.control.evaluation import evaluate_episodes
from purerl.control.policy import check_network_fields, make_network
from purerl.core.config import Config, doc, one_of, optional, positive, positive_whole
from purerl.core.files import file_digest
from purerl.core.networks import COMPUTE_DTYPES, ActorCritic
from purerl.core.optim import clipped_adam
from purerl.core.streams import Streams, split_streams, step_key


@dataclass(frozen=True)
class BCConfig(Config):
    """Behavioural cloning's settings. ``env`` is the demonstrations' (the CLI fills it from ``--demos``);
    ``validate`` checks that the two agree and that the demonstrations hold ``num_demo_episodes``."""

    env: str = doc("CartPole-v1", "the demonstrations' env (train bc and train dagger fill it from --demos)", known_env)
    demos: str = doc("", "demonstration directory, written by purerl collect")
    num_demo_episodes: int | None = doc(
        None,
        "episodes each seed trains on, drawn without replacement (none: all of them)",
        optional(positive_whole),
        sweepable=True,
    )
    num_updates: int = doc(2000, "gradient steps", positive)
    batch_size: int = doc(256, "demonstration steps per gradient step, drawn with replacement", positive)
    learning_rate: float = doc(1e-3, "Adam learning rate", positive, sweepable=True)
    adam_eps: float = doc(1e-5, "Adam epsilon", positive)
    max_grad_norm: float = doc(1.0, "global gradient-norm clip", positive)
    normalize_observations: bool = doc(True, "standardise observations by the trained-on steps' mean and std")
    obs_clip: float = doc(10.0, "clip standardised observations to [-obs_clip, obs_clip]", positive)
    hidden_sizes: tuple[int, ...] = doc((64, 64), "hidden layer widths of the policy MLP")
    activation: str = doc("tanh", "hidden activation: tanh or relu")
    log_std_init: float | None = doc(None, "initial log-std of the Gaussian policy (continuous actions only; none = 0)")
    compute_dtype: str = doc(
        "float32", f"dtype of the MLP's matmuls: {', '.join(COMPUTE_DTYPES)}", one_of(*COMPUTE_DTYPES)
    )
    eval_episodes: int = doc(128, "episodes of the final evaluation, one per fresh env", positive)
    eval_greedy: bool = doc(False, "evaluate with the policy's mode instead of samples")

    def validate(self) -> None:
        if not self.demos:
            raise ValueError("bc needs demonstrations: --demos DIR (written by purerl collect)")
        _, meta = load_demos(self.demos)
        if meta["env"] != self.env:
            raise ValueError(f"env {self.env!r} is not the demonstrations' env {meta['env']!r} (--demos {self.demos})")
        if self.num_demo_episodes is not None and self.num_demo_episodes > meta["episodes"]:
            raise ValueError(
                f"num_demo_episodes={self.num_demo_episodes} but {self.demos} holds {meta['episodes']} "
                f"episode{'' if meta['episodes'] == 1 else 's'}"
            )
        check_network_fields(self)

    @cached_property
    def spec(self) -> EnvSpec:
        return env_spec(self.env)

    @property
    def steps_per_update(self) -> None:  # no env steps while training: progress counts updates
        return None

    @property
    def inputs(self) -> dict[str, str]:
        """What the run reads, each with its SHA-256: a resume checks that they are unchanged
        (``purerl.io.run.run_meta``)."""
        path = str(Path(self.demos) / ARRAYS_FILE)
        return {path: file_digest(path)}


class BCState(NamedTuple):
    """One seed's run: the policy, the steps it trains on and their observation statistics."""

    train_state: TrainState
    step_weights: jax.Array  # float32 [N]: 1 / (steps trained on) for each of them, 0 for the others
    obs_stats: RunningMeanStd  # of the steps trained on, frozen
    streams: Streams
    config: BCConfig


def demonstrations(config: BCConfig) -> dict[str, jax.Array]:
    arrays, _ = load_demos(config.demos)
    return {name: jnp.asarray(value) for name, value in arrays.items()}


def normalize(config: BCConfig, stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
    return stats.normalize(obs, config.obs_clip) if config.normalize_observations else obs


def init(key: jax.Array, config: BCConfig) -> BCState:
    """Fresh policy parameters, the seed's episodes (all, or ``num_demo_episodes`` drawn without replacement)
    and their observation statistics, all from ``key``'s ``init`` stream."""
    demos = demonstrations(config)
    streams = split_streams(key)
    params_key, episodes_key = jax.random.split(streams.init)
    num_episodes = demos["episode_returns"].shape[0]
    chosen = num_episodes if config.num_demo_episodes is None else config.num_demo_episodes
    # The first `chosen` episodes of a random order; written as ranks so that a sweep may trace `chosen`, and a
    # seed's n episodes are the first n of the same order at every n (nested draws, common random numbers).
    rank = jnp.argsort(jax.random.permutation(episodes_key, num_episodes))
    trained = (rank < chosen)[demos["episode"]]
    step_weights = trained / trained.sum()
    stats = RunningMeanStd.of((demos["observations"], trained.astype(jnp.float32)))
    network = make_network(config)
    params = network.init(params_key, jnp.zeros((1, config.spec.obs_dim)), method=ActorCritic.policy)
    optimizer = clipped_adam(config.learning_rate, config.max_grad_norm, config.adam_eps)
    train_state = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
    return BCState(train_state, step_weights, stats, streams, config)


def bc_loss(params: Any, config: BCConfig, obs: jax.Array, actions: jax.Array) -> tuple[jax.Array, dict]:
    """Mean negative log-likelihood of the expert's ``actions`` at ``obs`` (``[B, obs_dim]``, normalised)."""
    dist = make_network(config).apply(params, obs, method=ActorCritic.policy)
    log_prob = dist.log_prob(actions)
    metrics = {"entropy": dist.entropy().mean()}
    if config.spec.discrete:
        metrics["accuracy"] = (dist.mode() == actions).mean()
    else:
        metrics["action_mse"] = ((dist.mode() - actions) ** 2).sum(axis=-1).mean()
    return -log_prob.mean(), metrics


def gradient_step(
    train_state: TrainState, config: BCConfig, stats: RunningMeanStd, obs: jax.Array, actions: jax.Array
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on ``bc_loss`` at a batch of raw ``obs [B, obs_dim]`` (standardised here by ``stats``) and
    expert ``actions``; BC's and DAgger's."""
    grad_fn = jax.value_and_grad(bc_loss, has_aux=True)
    (loss, metrics), grads = grad_fn(train_state.params, config, normalize(config, stats, obs), actions)
    return train_state.apply_gradients(grads=grads), metrics | {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def update(state: BCState, index: jax.Array) -> tuple[BCState, dict[str, jax.Array]]:
    """One Adam step on ``batch_size`` of the seed's demonstration steps, drawn with replacement."""
    config = state.config
    demos = demonstrations(config)
    key = step_key(state.streams.minibatch, index)
    rows = jax.random.choice(key, state.step_weights.shape[0], (config.batch_size,), p=state.step_weights)
    train_state, metrics = gradient_step(
        state.train_state, config, state.obs_stats, demos["observations"][rows], demos["actions"][rows]
    )
    return state._replace(train_state=train_state), metrics | {"env_steps": jnp.asarray(0, jnp.int32)}


def make_train(config: BCConfig):
    """``train(key, config=config) -> (BCState, metrics)``: ``init`` then a ``lax.scan`` of ``update``."""

    def train(key: jax.Array, config: BCConfig = config) -> tuple[BCState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, config), jnp.arange(config.num_updates))

    return train


def policy(state: BCState, obs: jax.Array) -> distrax.Distribution:
    """One seed's policy at raw observations ``obs [N, obs_dim]``, standardised by its frozen statistics."""
    config = state.config
    obs = normalize(config, state.obs_stats, obs)
    return make_network(config).apply(state.train_state.params, obs, method=ActorCritic.policy)


def evaluate(state: BCState, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """``{"returns": [E], "lengths": [E]}`` for E = eval_episodes, as PPO's evaluation: one episode in each of
    E fresh envs (actions clipped to the box), sampled actions (or the mode if ``eval_greedy``), the seed's
    evaluation stream by default."""
    config = state.config
    key = state.streams.evaluation if key is None else key
    env = evaluation_env(config.env, config.eval_episodes)
    return evaluate_episodes(partial(policy, state), env, key, config.spec.max_steps_in_episode, config.eval_greedy)
