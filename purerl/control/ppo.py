"""PPO on gymnax: the whole training run is one pure function ``train(key)``.

``make_train(config)`` builds the environment, network and optimiser once and returns ``train``: ``init``
then a ``lax.scan`` of ``update`` over updates. Each update is a ``lax.scan`` rollout of ``num_steps`` steps
in ``num_envs`` environments (time-major ``[T, B, ...]``), truncation-aware GAE, and ``update_epochs``
epochs of shuffled minibatches. ``jax.jit(jax.vmap(train))(keys)`` trains one agent per key; seed ``i`` of
that run equals ``train(keys[i])``. ``make_init`` and ``make_update`` are exposed so that a long run can
scan its updates in checkpointed chunks (``purerl.io.chunked``).

Implementation details follow CleanRL's ``ppo.py`` / ``ppo_continuous_action.py`` (Huang et al., "The 37
Implementation Details of PPO", ICLR blog track 2022); each is named where it is applied.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purerl.control.envs import (
    ClipAction,
    EnvSpec,
    EpisodeStatistics,
    NormalizeObservation,
    ScaleReward,
    VecEnv,
    check_env_name,
    env_spec,
)
from purerl.control.evaluation import evaluate_episodes
from purerl.control.policy import check_network_fields, make_network
from purerl.core.config import (
    check_hyperparams,
    doc,
    require_divisible,
    require_in_range,
    require_non_negative,
    require_positive,
    with_hyperparams,
)
from purerl.core.gae import gae
from purerl.core.kl import kl_k1, kl_k3
from purerl.core.losses import clipped_surrogate_loss, clipped_value_loss, normalize
from purerl.core.minibatch import minibatch_epochs
from purerl.core.networks import ActorCritic
from purerl.core.optim import clipped_adam, linear_annealing, set_learning_rate
from purerl.core.stats import explained_variance
from purerl.core.streams import Streams, split_streams, step_key


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters. Defaults are CleanRL's / PureJaxRL's CartPole settings."""

    # Fields a sweep may vary inside one compiled program (carried as arrays in the state; see ``make_init``).
    SWEEPABLE: ClassVar[tuple[str, ...]] = ("learning_rate", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef")

    env: str = doc("CartPole-v1", "gymnax environment id")
    total_timesteps: int = doc(500_000, "env steps per seed (rounded down to whole updates)")
    num_envs: int = doc(4, "parallel environments per seed")
    num_steps: int = doc(128, "rollout length per environment and update")
    update_epochs: int = doc(4, "passes over each rollout batch")
    num_minibatches: int = doc(4, "minibatches per epoch; must divide num_envs*num_steps")
    learning_rate: float = doc(2.5e-4, "Adam learning rate (initial value when annealed)")
    anneal_lr: bool = doc(True, "anneal the learning rate linearly to 0 over the updates")
    adam_eps: float = doc(1e-5, "Adam epsilon")
    max_grad_norm: float = doc(0.5, "global gradient-norm clip")
    gamma: float = doc(0.99, "discount")
    gae_lambda: float = doc(0.95, "GAE lambda")
    clip_eps: float = doc(0.2, "surrogate (and value) clip range")
    clip_value_loss: bool = doc(True, "clip the value loss around the rollout values")
    ent_coef: float = doc(0.01, "entropy bonus coefficient")
    vf_coef: float = doc(0.5, "value loss coefficient")
    normalize_advantages: bool = doc(True, "standardise advantages per minibatch")
    bootstrap_truncation: bool = doc(
        True, "bootstrap from V(final obs) at time limits; false treats truncation as termination"
    )
    target_kl: float | None = doc(None, "skip an update's remaining epochs once an epoch's mean approx KL exceeds this")
    hidden_sizes: tuple[int, ...] = doc((64, 64), "hidden layer widths of the actor and of the critic MLP")
    activation: str = doc("tanh", "hidden activation: tanh or relu")
    log_std_init: float | None = doc(None, "initial log-std of the Gaussian policy (continuous actions only; none = 0)")
    normalize_observations: bool = doc(False, "standardise observations by running statistics")
    scale_rewards: bool = doc(False, "divide rewards by the running std of the discounted return")
    obs_clip: float = doc(10.0, "clip normalised observations to [-obs_clip, obs_clip]")
    reward_clip: float = doc(10.0, "clip scaled rewards to [-reward_clip, reward_clip]")
    eval_episodes: int = doc(128, "episodes per seed in the final evaluation")
    eval_greedy: bool = doc(False, "evaluate the policy's mode instead of sampling")

    def __post_init__(self) -> None:
        check_env_name(self.env)
        for name in (
            "total_timesteps",
            "num_envs",
            "num_steps",
            "update_epochs",
            "num_minibatches",
            "learning_rate",
            "adam_eps",
            "max_grad_norm",
            "obs_clip",
            "reward_clip",
            "eval_episodes",
        ):
            require_positive(name, getattr(self, name))
        for name in ("clip_eps", "ent_coef", "vf_coef"):
            require_non_negative(name, getattr(self, name))
        require_in_range("gamma", self.gamma, 0.0, 1.0)
        require_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        require_divisible("num_envs*num_steps", self.batch_size, "num_minibatches", self.num_minibatches)
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one rollout, num_envs*num_steps={self.batch_size}"
            )
        if self.target_kl is not None:
            require_positive("target_kl", self.target_kl)
        check_network_fields(self)

    @cached_property
    def spec(self) -> EnvSpec:
        return env_spec(self.env)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def steps_per_update(self) -> int:
        return self.batch_size

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


class Transition(NamedTuple):
    """One rollout step for all envs; stacked by the rollout scan to ``[T, B, ...]``."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array  # terminated | truncated
    final_obs: jax.Array  # the true next observation (before any auto-reset)
    episode_return: jax.Array  # raw return of the episode that ended here, where done
    episode_length: jax.Array


class RunnerState(NamedTuple):
    """Everything a run carries between updates: the whole state of one seed."""

    train_state: TrainState
    env_state: Any
    obs: jax.Array
    streams: Streams  # the seed's random streams; update u uses fold_in(stream, u) (purerl.core.streams)
    last_episode_return: jax.Array  # reported for updates in which no episode ended
    last_episode_length: jax.Array
    hparams: dict[str, jax.Array]  # this run's values of swept fields (empty when nothing is swept)


def make_env(config: PPOConfig, num_envs: int, training: bool) -> Any:
    """The env stack: episode statistics on raw rewards, action clipping (continuous), then normalisers.

    Evaluation (``training=False``) gets no normalisers: it applies the frozen training statistics itself.
    """
    spec = config.spec
    env = EpisodeStatistics(VecEnv(config.env, num_envs))
    if not spec.discrete:
        env = ClipAction(env, spec.action_low, spec.action_high)
    if training and config.normalize_observations:
        env = NormalizeObservation(env, config.obs_clip)
    if training and config.scale_rewards:
        env = ScaleReward(env, config.gamma, config.reward_clip)
    return env


def ppo_loss(
    params: Any, network: ActorCritic, config: PPOConfig, minibatch: dict[str, jax.Array]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO's loss on one minibatch: clipped surrogate (detail 8) + vf_coef * clipped value loss (detail 9)
    - ent_coef * entropy (detail 10). ``minibatch`` holds flat ``[N, ...]`` arrays ``obs, action, log_prob``
    (at rollout time), ``value`` (at rollout time), ``advantages`` and ``targets``."""
    dist, value = network.apply(params, minibatch["obs"])
    log_ratio = dist.log_prob(minibatch["action"]) - minibatch["log_prob"]
    advantages = minibatch["advantages"]
    if config.normalize_advantages:
        advantages = normalize(advantages)  # per minibatch (detail 7)
    policy_loss, clipped = clipped_surrogate_loss(log_ratio, advantages, config.clip_eps)
    value_loss = clipped_value_loss(
        value, minibatch["value"], minibatch["targets"], config.clip_eps if config.clip_value_loss else None
    )
    entropy = dist.entropy()
    loss = policy_loss.mean() + config.vf_coef * value_loss.mean() - config.ent_coef * entropy.mean()
    stats = {
        "loss": loss,
        "policy_loss": policy_loss.mean(),
        "value_loss": value_loss.mean(),
        "entropy": entropy.mean(),
        "approx_kl": kl_k3(log_ratio).mean(),  # KL(pi_old || pi_new), low-variance estimator
        "approx_kl_k1": kl_k1(log_ratio).mean(),
        "clip_fraction": clipped.mean(),
    }
    return loss, stats


def make_init(config: PPOConfig) -> Callable[..., RunnerState]:
    """Returns ``init(key, hparams=None) -> RunnerState``: fresh parameters, optimiser and environments.

    ``hparams`` maps ``PPOConfig.SWEEPABLE`` fields to scalars that replace the config's values for this run;
    they live in the state, so ``jax.vmap(init)(keys, hparams)`` sets up one sweep point per run.
    """
    network = make_network(config)
    env = make_env(config, config.num_envs, training=True)
    # Global-norm clipping (detail 11), Adam eps 1e-5 (detail 3). The learning rate is set at the start of
    # every update, so the linear annealing (detail 4) is exact even when target-KL skips epochs.
    optimizer = clipped_adam(config.learning_rate, config.max_grad_norm, config.adam_eps)

    def init(key: jax.Array, hparams: dict[str, Any] | None = None) -> RunnerState:
        hparams = {} if hparams is None else hparams
        check_hyperparams(config, hparams)
        if "gamma" in hparams and config.scale_rewards:
            raise ValueError("gamma cannot be swept with scale_rewards=true (the reward scaler's gamma is compiled in)")
        streams = split_streams(key)
        params_key, reset_key = jax.random.split(streams.init)
        params = network.init(params_key, jnp.zeros((1, config.spec.obs_dim), jnp.float32))
        train_state = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
        obs, env_state = env.reset(reset_key)
        nan = jnp.asarray(jnp.nan, jnp.float32)
        hparams = {name: jnp.asarray(value, jnp.float32) for name, value in hparams.items()}
        return RunnerState(train_state, env_state, obs, streams, nan, nan, hparams)

    return init


def make_update(config: PPOConfig) -> Callable[[RunnerState, jax.Array], tuple[RunnerState, dict[str, jax.Array]]]:
    """Returns ``update(runner_state, update_index) -> (runner_state, metrics)``: one rollout and its
    ``update_epochs`` epochs of minibatch steps. ``metrics`` maps names to scalars; ``episode_return`` is the
    mean raw return of the episodes that ended in the rollout (the last one carried over if none did)."""
    network = make_network(config)
    env = make_env(config, config.num_envs, training=True)
    num_updates = config.num_updates

    def value_fn(params, obs):
        return network.apply(params, obs, method=ActorCritic.value)

    def env_step(runner: RunnerState, key: jax.Array) -> tuple[RunnerState, Transition]:
        action_key, env_key = jax.random.split(key)
        dist, value = network.apply(runner.train_state.params, runner.obs)
        # The unclipped sample is stored and scored; only the env sees the clipped action (continuous detail 5).
        action = dist.sample(seed=action_key)
        log_prob = dist.log_prob(action)
        obs, env_state, reward, terminated, truncated, info = env.step(env_key, runner.env_state, action)
        transition = Transition(
            runner.obs,
            action,
            log_prob,
            value,
            reward,
            terminated,
            terminated | truncated,
            info["final_observation"],
            info["episode_return"],
            info["episode_length"],
        )
        return runner._replace(env_state=env_state, obs=obs), transition

    # ``hp`` below is the config with this run's swept hyperparameters (traced) in place.
    def minibatch_step(hp: PPOConfig, train_state: TrainState, minibatch):
        grads, stats = jax.grad(ppo_loss, has_aux=True)(train_state.params, network, hp, minibatch)
        return train_state.apply_gradients(grads=grads), stats

    # Target-KL early stop (auxiliary detail): once an epoch's mean approx KL exceeds target_kl, the
    # remaining epochs of this update are skipped.
    stop = None if config.target_kl is None else (lambda stats: jnp.mean(stats["approx_kl"]) > config.target_kl)

    def update_step(runner: RunnerState, update: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        hp = with_hyperparams(config, runner.hparams)
        step_keys = jax.random.split(step_key(runner.streams.rollout, update), config.num_steps)
        runner, traj = jax.lax.scan(env_step, runner, step_keys)
        params = runner.train_state.params

        if config.bootstrap_truncation:
            # delta_t = r_t + gamma (1 - terminated_t) V(final_obs_t) - V(s_t): a time limit still bootstraps.
            next_values, terminated = value_fn(params, traj.final_obs), traj.terminated
        else:
            last_value = value_fn(params, runner.obs)
            next_values = jnp.concatenate([traj.value[1:], last_value[None]], axis=0)
            terminated = traj.done
        advantages, targets = gae(traj.reward, traj.value, next_values, terminated, traj.done, hp.gamma, hp.gae_lambda)

        batch = {
            "obs": traj.obs,
            "action": traj.action,
            "log_prob": traj.log_prob,
            "value": traj.value,
            "advantages": advantages,
            "targets": targets,
        }
        batch = jax.tree.map(lambda x: x.reshape(config.batch_size, *x.shape[2:]), batch)
        learning_rate = linear_annealing(hp.learning_rate, update, num_updates, config.anneal_lr)
        train_state = set_learning_rate(runner.train_state, learning_rate)
        # A fresh shuffle of the whole batch every epoch (detail 6).
        train_state, stats, epoch_ran = minibatch_epochs(
            partial(minibatch_step, hp),
            train_state,
            batch,
            step_key(runner.streams.minibatch, update),
            config.update_epochs,
            config.num_minibatches,
            stop=stop,
        )
        epochs_run = jnp.sum(epoch_ran)
        epoch_means = {name: jnp.mean(values, axis=1) for name, values in stats.items()}
        metrics = {name: jnp.sum(means * epoch_ran) / epochs_run for name, means in epoch_means.items()}

        # Episodic metrics are reduced to scalars here; per-step info is never stacked across updates.
        finished = jnp.sum(traj.done)
        episode_return = jnp.where(
            finished > 0, jnp.sum(traj.episode_return * traj.done) / finished, runner.last_episode_return
        )
        episode_length = jnp.where(
            finished > 0, jnp.sum(traj.episode_length * traj.done) / finished, runner.last_episode_length
        )
        metrics |= {
            "episode_return": episode_return,
            "episode_length": episode_length,
            "episodes_finished": finished,
            "explained_variance": explained_variance(traj.value, targets),
            "learning_rate": learning_rate,
            "epochs_run": epochs_run,
            "env_steps": (update + 1) * config.batch_size,
        }
        runner = runner._replace(
            train_state=train_state,
            last_episode_return=episode_return,
            last_episode_length=episode_length,
        )
        return runner, metrics

    return update_step


def make_train(config: PPOConfig) -> Callable[..., tuple[RunnerState, dict[str, jax.Array]]]:
    """Returns ``train(key, hparams=None) -> (RunnerState, metrics)``: ``init`` then a ``lax.scan`` of
    ``update`` over all updates; ``metrics`` maps names to ``[num_updates]`` arrays."""
    init, update = make_init(config), make_update(config)

    def train(key: jax.Array, hparams: dict[str, Any] | None = None) -> tuple[RunnerState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, hparams), jnp.arange(config.num_updates))

    return train


def make_policy(config: PPOConfig) -> Callable[[RunnerState, jax.Array], Any]:
    """Returns ``policy(runner_state, obs [N, obs_dim]) -> distribution over actions`` of one seed's state,
    with the run's frozen observation statistics applied (take a seed out of a vmapped run with
    ``purerl.control.evaluation.select_seed``)."""
    network = make_network(config)
    train_env = make_env(config, config.num_envs, training=True)

    def policy(runner: RunnerState, obs: jax.Array):
        obs_stats = train_env.observation_stats(runner.env_state)
        if obs_stats is not None:
            obs = obs_stats.normalize(obs, config.obs_clip)
        return network.apply(runner.train_state.params, obs, method=ActorCritic.policy)

    return policy


def make_evaluate(config: PPOConfig) -> Callable[..., dict[str, jax.Array]]:
    """Returns ``evaluate(runner_state, key=None) -> {"returns": [E], "lengths": [E]}`` for E = eval_episodes.

    One episode in each of E fresh environments (``evaluate_episodes``), with the stochastic policy (or its
    mode if ``eval_greedy``) and the training run's frozen observation statistics. ``key`` defaults to the
    seed's own evaluation stream, which training never draws from (``purerl.core.streams``).
    """
    policy = make_policy(config)
    eval_env = make_env(config, config.eval_episodes, training=False)

    def evaluate(runner: RunnerState, key: jax.Array | None = None) -> dict[str, jax.Array]:
        key = runner.streams.evaluation if key is None else key
        return evaluate_episodes(
            partial(policy, runner), eval_env, key, config.spec.max_steps_in_episode, config.eval_greedy
        )

    return evaluate
