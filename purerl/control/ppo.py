"""PPO on gymnax: the whole training run is one pure function ``train(key)``.

``make_train(config)`` returns ``train``: ``init`` then a ``lax.scan`` of ``update`` over updates. Each
update is a ``lax.scan`` rollout of ``num_steps`` steps in ``num_envs`` environments (time-major
``[T, B, ...]``), truncation-aware GAE, and ``update_epochs`` epochs of shuffled minibatches.
``jax.jit(jax.vmap(train))(keys)`` trains one agent per key; seed ``i`` of that run equals
``train(keys[i])``. ``init(key, config)`` and ``update(state, index)`` are exposed so that a long run can
scan its updates in checkpointed chunks (``purerl.io.chunked``); ``update`` reads every setting from the
config the state carries (``purerl.core.config``): one config in scope, traced where a sweep varies it.

Implementation details follow CleanRL's ``ppo.py`` / ``ppo_continuous_action.py`` (Huang et al., "The 37
Implementation Details of PPO", ICLR blog track 2022); each is named where it is applied.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purerl.control.envs import (
    EnvSpec,
    MultiplyReward,
    NormalizeObservation,
    ScaleReward,
    env_spec,
    evaluation_env,
    finished_episode_means,
    known_env,
)
from purerl.control.evaluation import evaluate_episodes
from purerl.control.policy import check_network_fields, make_network
from purerl.core.config import Config, doc, in_range, non_negative, one_of, optional, positive, require_divisible
from purerl.core.gae import gae
from purerl.core.kl import kl_k1, kl_k3
from purerl.core.losses import clipped_surrogate_loss, clipped_value_loss, normalize
from purerl.core.minibatch import minibatch_epochs
from purerl.core.networks import COMPUTE_DTYPES, ActorCritic, cast_dense_weights
from purerl.core.optim import clipped_adam, linear_annealing, set_learning_rate
from purerl.core.stats import explained_variance
from purerl.core.streams import Streams, split_streams, step_key

# On a GPU each loop iteration launches its kernels from the host (about 30 per rollout step for CartPole),
# and at a few hundred seeds the launches, not the work, set the pace: unrolling 8 steps per iteration lets
# XLA fuse across them (benchmarks/results/gpu_aot_h100.md: 5.15M -> 3.38M launches per CartPole run; PureJaxRL
# unrolls its GAE scan 16x for the same reason). On a CPU there is no launch cost and
# unrolling only lengthens the compile.
GPU_SCAN_UNROLL = 8


@dataclass(frozen=True)
class PPOConfig(Config):
    """PPO hyperparameters. Defaults are CleanRL's / PureJaxRL's CartPole settings. Each field checks its own
    value; ``validate`` checks the rules between fields. Sweepable fields may be traced (``Config.trace``)."""

    env: str = doc("CartPole-v1", "gymnax environment id, brax/<env> or playground/<Env> (extras)", known_env)
    total_timesteps: int = doc(500_000, "env steps per seed (rounded down to whole updates)", positive)
    num_envs: int = doc(4, "parallel environments per seed", positive)
    num_steps: int = doc(128, "rollout length per environment and update", positive)
    update_epochs: int = doc(4, "passes over each rollout batch", positive)
    num_minibatches: int = doc(4, "minibatches per epoch; must divide num_envs*num_steps", positive)
    learning_rate: float = doc(2.5e-4, "Adam learning rate (initial value when annealed)", positive, sweepable=True)
    anneal_lr: bool = doc(True, "anneal the learning rate linearly to 0 over the updates")
    adam_eps: float = doc(1e-5, "Adam epsilon", positive)
    max_grad_norm: float = doc(0.5, "global gradient-norm clip", positive)
    gamma: float = doc(0.99, "discount", in_range(0.0, 1.0), sweepable=True)
    gae_lambda: float = doc(0.95, "GAE lambda", in_range(0.0, 1.0), sweepable=True)
    clip_eps: float = doc(0.2, "surrogate (and value) clip range", non_negative, sweepable=True)
    clip_value_loss: bool = doc(True, "clip the value loss around the rollout values")
    ent_coef: float = doc(0.01, "entropy bonus coefficient", non_negative, sweepable=True)
    vf_coef: float = doc(0.5, "value loss coefficient", non_negative, sweepable=True)
    normalize_advantages: bool = doc(True, "standardise advantages per minibatch")
    bootstrap_truncation: bool = doc(
        True, "bootstrap from V(final obs) at time limits; false treats truncation as termination"
    )
    target_kl: float | None = doc(
        None, "skip an update's remaining epochs once an epoch's mean approx KL exceeds this", optional(positive)
    )
    hidden_sizes: tuple[int, ...] = doc((64, 64), "hidden layer widths of the actor and of the critic MLP")
    activation: str = doc("tanh", "hidden activation: tanh or relu")
    log_std_init: float | None = doc(None, "initial log-std of the Gaussian policy (continuous actions only; none = 0)")
    compute_dtype: str = doc(
        "float32",
        "hidden layers' matmul and activation dtype: float32, or bfloat16 (params, heads and losses stay "
        "float32; for a GPU at many seeds: fewer bytes per layer; about 2x slower on a CPU)",
        one_of(*COMPUTE_DTYPES),
    )
    normalize_observations: bool = doc(False, "standardise observations by running statistics")
    reward_scale: float = doc(
        1.0, "multiply rewards by this constant for learning (Brax's reward_scaling); returns stay raw", positive
    )
    scale_rewards: bool = doc(False, "divide rewards by the running std of the discounted return")
    obs_clip: float = doc(10.0, "clip normalised observations to [-obs_clip, obs_clip]", positive)
    reward_clip: float = doc(10.0, "clip scaled rewards to [-reward_clip, reward_clip]", positive)
    eval_episodes: int = doc(128, "episodes per seed in the final evaluation", positive)
    eval_greedy: bool = doc(False, "evaluate the policy's mode instead of sampling")
    scan_unroll: int | None = doc(
        None,
        "iterations per loop step of the rollout and GAE scans: fewer kernel launches on a GPU, longer compiles, "
        f"the same results; none: {GPU_SCAN_UNROLL} on a GPU, 1 elsewhere",
        optional(positive),
    )

    def validate(self) -> None:
        require_divisible("num_envs*num_steps", self.batch_size, "num_minibatches", self.num_minibatches)
        if self.scan_unroll is not None and self.scan_unroll > self.num_steps:
            raise ValueError(
                f"scan_unroll={self.scan_unroll} exceeds num_steps={self.num_steps}, the length of the scans it "
                "unrolls (a full unroll already; more only lengthens the compile)"
            )
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one rollout, num_envs*num_steps={self.batch_size}"
            )
        check_network_fields(self)

    def check_traceable(self, name: str) -> None:
        if name == "gamma" and self.scale_rewards:
            raise ValueError("gamma cannot be swept with scale_rewards=true (the reward scaler's gamma is compiled in)")

    @cached_property
    def spec(self) -> EnvSpec:
        return env_spec(self.env)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def unroll(self) -> int:
        """``scan_unroll`` resolved for the backend that compiles the program."""
        if self.scan_unroll is not None:
            return self.scan_unroll
        return GPU_SCAN_UNROLL if jax.default_backend() == "gpu" else 1

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
    config: PPOConfig  # the run's config: its swept fields are leaves (per-run arrays), the rest static


def make_env(config: PPOConfig, num_envs: int, training: bool) -> Any:
    """The env stack: episode statistics on raw rewards, action clipping (continuous), the constant reward scale,
    then normalisers.

    Evaluation (``training=False``) gets no normalisers: it applies the frozen training statistics itself.
    """
    env = evaluation_env(config.env, num_envs)
    if training and config.reward_scale != 1.0:
        env = MultiplyReward(env, config.reward_scale)
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


def init(key: jax.Array, config: PPOConfig) -> RunnerState:
    """A run's initial state: fresh parameters, optimiser and environments, all from ``key``'s streams.

    ``config`` is carried in the state; a sweep passes one with traced fields (``Config.trace``), so
    ``jax.vmap(init)(keys, config.trace(learning_rate=lrs))`` sets up one sweep point per run.
    """
    network = make_network(config)
    env = make_env(config, config.num_envs, training=True)
    # Global-norm clipping (detail 11), Adam eps 1e-5 (detail 3). The learning rate is set at the start of
    # every update, so the linear annealing (detail 4) is exact even when target-KL skips epochs.
    optimizer = clipped_adam(config.learning_rate, config.max_grad_norm, config.adam_eps)
    streams = split_streams(key)
    params_key, reset_key = jax.random.split(streams.init)
    params = network.init(params_key, jnp.zeros((1, config.spec.obs_dim), jnp.float32))
    train_state = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
    obs, env_state = env.reset(reset_key)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    return RunnerState(train_state, env_state, obs, streams, nan, nan, config)


def update(runner: RunnerState, index: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
    """One iteration of PPO's algorithm box (Schulman et al. 2017, Algorithm 1), update ``index``:

    1. run the policy for ``num_steps`` steps in each of ``num_envs`` environments;
    2. compute advantage estimates (truncation-aware GAE);
    3. optimise the clipped surrogate for ``update_epochs`` epochs of ``num_minibatches`` minibatches.

    Returns the new state and ``metrics``, a name -> scalar dict (``update_metrics``).
    """
    network = make_network(runner.config)
    runner, traj = rollout(runner, network, step_key(runner.streams.rollout, index))
    return learn(runner, network, traj, index)


def learn(
    runner: RunnerState, network: ActorCritic, traj: Transition, index: jax.Array
) -> tuple[RunnerState, dict[str, jax.Array]]:
    """Steps 2 and 3 of ``update`` on the rollout ``traj`` that ``runner`` has just played (PbRL passes one whose
    rewards it replaced with its learned reward's)."""
    config = runner.config
    advantages, targets = advantage_estimates(config, network, runner, traj)
    batch = {
        "obs": traj.obs,
        "action": traj.action,
        "log_prob": traj.log_prob,
        "value": traj.value,
        "advantages": advantages,
        "targets": targets,
    }
    batch = jax.tree.map(lambda x: x.reshape(config.batch_size, *x.shape[2:]), batch)
    learning_rate = linear_annealing(config.learning_rate, index, config.num_updates, config.anneal_lr)
    # A fresh shuffle of the whole batch every epoch (detail 6); target-KL early stop (auxiliary detail).
    train_state, stats, epoch_ran = minibatch_epochs(
        partial(sgd_step, network, config),
        set_learning_rate(runner.train_state, learning_rate),
        batch,
        step_key(runner.streams.minibatch, index),
        config.update_epochs,
        config.num_minibatches,
        stop=None if config.target_kl is None else partial(kl_exceeds_target, config.target_kl),
    )
    return update_metrics(
        runner._replace(train_state=train_state), traj, targets, stats, epoch_ran, learning_rate, index
    )


def rollout(runner: RunnerState, network: ActorCritic, key: jax.Array) -> tuple[RunnerState, Transition]:
    """``num_steps`` steps of the policy in the run's ``num_envs`` environments: a ``lax.scan`` of time-major
    transitions ``[T, B, ...]``; the runner carries the environments on."""
    env = make_env(runner.config, runner.config.num_envs, training=True)
    params = cast_dense_weights(runner.train_state.params, network.compute_dtype)  # once, not at every step

    def env_step(runner: RunnerState, key: jax.Array) -> tuple[RunnerState, Transition]:
        action_key, env_key = jax.random.split(key)
        dist, value = network.apply(params, runner.obs)
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

    keys = jax.random.split(key, runner.config.num_steps)
    return jax.lax.scan(env_step, runner, keys, unroll=runner.config.unroll)


def advantage_estimates(
    config: PPOConfig, network: ActorCritic, runner: RunnerState, traj: Transition
) -> tuple[jax.Array, jax.Array]:
    """GAE advantages and value targets ``[T, B]`` (``purerl.core.gae``) of a rollout, from ``runner``'s
    parameters after it."""
    value_fn = partial(network.apply, runner.train_state.params, method=ActorCritic.value)
    if config.bootstrap_truncation:
        # delta_t = r_t + gamma (1 - terminated_t) V(final_obs_t) - V(s_t): a time limit still bootstraps.
        next_values, terminated = value_fn(traj.final_obs), traj.terminated
    else:
        next_values = jnp.concatenate([traj.value[1:], value_fn(runner.obs)[None]], axis=0)
        terminated = traj.done
    return gae(
        traj.reward, traj.value, next_values, terminated, traj.done, config.gamma, config.gae_lambda, config.unroll
    )


def sgd_step(network: ActorCritic, config: PPOConfig, train_state: TrainState, minibatch: dict[str, jax.Array]):
    """One Adam step on ``ppo_loss`` of a minibatch."""
    grads, stats = jax.grad(ppo_loss, has_aux=True)(train_state.params, network, config, minibatch)
    return train_state.apply_gradients(grads=grads), stats


def kl_exceeds_target(target_kl: float, epoch_stats: dict[str, jax.Array]) -> jax.Array:
    """Whether an epoch's mean approximate KL exceeds ``target_kl``: the remaining epochs are then skipped."""
    return jnp.mean(epoch_stats["approx_kl"]) > target_kl


def update_metrics(
    runner: RunnerState,
    traj: Transition,
    targets: jax.Array,
    stats: dict[str, jax.Array],
    epoch_ran: jax.Array,
    learning_rate: jax.Array,
    index: jax.Array,
) -> tuple[RunnerState, dict[str, jax.Array]]:
    """The update's scalars: loss statistics averaged over the epochs that ran, and the mean raw return and
    length of the episodes that ended in the rollout (the last ones carried over if none did, so the
    runner keeps them), how many ended and how many of those a time limit ended (truncated, not terminated:
    the steps ``bootstrap_truncation`` bootstraps). Per-step info is never stacked across updates."""
    epochs_run = jnp.sum(epoch_ran)
    epoch_means = {name: jnp.mean(values, axis=1) for name, values in stats.items()}
    metrics = {name: jnp.sum(means * epoch_ran) / epochs_run for name, means in epoch_means.items()}
    episode_return, episode_length, finished = finished_episode_means(
        traj.done, traj.episode_return, traj.episode_length, runner.last_episode_return, runner.last_episode_length
    )
    metrics |= {
        "episode_return": episode_return,
        "episode_length": episode_length,
        "episodes_finished": finished,
        "episodes_truncated": jnp.sum(traj.done & ~traj.terminated),  # ended by a time limit alone
        "explained_variance": explained_variance(traj.value, targets),
        "learning_rate": learning_rate,
        "epochs_run": epochs_run,
        "env_steps": (index + 1) * runner.config.batch_size,
    }
    return runner._replace(last_episode_return=episode_return, last_episode_length=episode_length), metrics


def make_train(config: PPOConfig) -> Callable[..., tuple[RunnerState, dict[str, jax.Array]]]:
    """Returns ``train(key, config=config) -> (RunnerState, metrics)``: ``init`` then a ``lax.scan`` of
    ``update`` over all updates; ``metrics`` maps names to ``[num_updates]`` arrays. Pass a traced config
    (``Config.trace``) to train a sweep point."""

    def train(key: jax.Array, config: PPOConfig = config) -> tuple[RunnerState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, config), jnp.arange(config.num_updates))

    return train


def policy(runner: RunnerState, obs: jax.Array) -> Any:
    """One seed's policy at ``obs [N, obs_dim]``: a distribution over actions, with the run's frozen
    observation statistics applied (take a seed out of a vmapped run with
    ``purerl.control.evaluation.select_seed``)."""
    config = runner.config
    obs_stats = make_env(config, config.num_envs, training=True).observation_stats(runner.env_state)
    if obs_stats is not None:
        obs = obs_stats.normalize(obs, config.obs_clip)
    return make_network(config).apply(runner.train_state.params, obs, method=ActorCritic.policy)


def evaluate(runner: RunnerState, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """``{"returns": [E], "lengths": [E]}`` for E = eval_episodes: one episode in each of E fresh
    environments (``evaluate_episodes``), with the stochastic policy (or its mode if ``eval_greedy``) and the
    training run's frozen observation statistics. ``key`` defaults to the seed's own evaluation stream,
    which training never draws from (``purerl.core.streams``)."""
    config = runner.config
    key = runner.streams.evaluation if key is None else key
    eval_env = make_env(config, config.eval_episodes, training=False)
    params = cast_dense_weights(runner.train_state.params, config.compute_dtype)  # once, not at every step
    runner = runner._replace(train_state=runner.train_state.replace(params=params))
    return evaluate_episodes(
        partial(policy, runner), eval_env, key, config.spec.max_steps_in_episode, config.eval_greedy
    )
