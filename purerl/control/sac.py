"""Soft Actor-Critic on gymnax's continuous-action envs: the whole run is one pure function ``train(key)``.

SAC (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", arXiv 1812.05905, Algorithm 1) learns
a maximum-entropy policy off-policy. Each update of ``make_train``'s ``lax.scan``:

1. steps ``num_envs`` environments ``num_steps`` times (time-major ``[T, B]``), with uniformly random actions
   until ``learning_starts`` env steps per seed have passed, then with samples of the policy, and adds every
   transition to a replay buffer that lives in the run's state (flashbax's item buffer);
2. once ``learning_starts`` is reached, takes ``utd_ratio * num_envs * num_steps`` gradient steps, each on a
   fresh uniform sample of ``batch_size`` transitions: the twin critics towards the soft Bellman target, then
   the actor against the updated critics, then the temperature towards the target entropy, then the target
   critics by Polyak averaging.

Targets bootstrap at time limits and not at termination: the buffer keeps each step's true next observation
(``final_observation``, before any auto-reset) and its ``terminated`` flag apart from truncation
(``bootstrap_truncation=false`` treats a time limit as a termination, the ablation).

``jax.jit(jax.vmap(train))(keys)`` trains one agent per key; seed ``i`` equals ``train(keys[i])``. ``init`` and
``update`` are exposed for checkpointed chunks (``purerl.io.chunked``), as PPO's.
Details follow CleanRL's ``sac_continuous_action.py`` (which follows the paper) where not said otherwise.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, NamedTuple

import flashbax
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from purerl.control.envs import (
    EnvSpec,
    EpisodeStatistics,
    MultiplyReward,
    RunningMeanStd,
    env_spec,
    finished_episode_means,
    known_env,
    vec_env,
)
from purerl.control.evaluation import evaluate_episodes
from purerl.control.policy import check_hidden_sizes
from purerl.core.config import Config, doc, finite, in_range, non_negative, one_of, optional, positive
from purerl.core.distributions import TanhSquashedGaussian
from purerl.core.networks import (
    ACTIVATIONS,
    COMPUTE_DTYPES,
    SquashedGaussianActor,
    StateActionEnsemble,
    cast_dense_weights,
)
from purerl.core.optim import clipped_adam
from purerl.core.streams import Streams, split_streams, step_key

MAX_GRADIENT_STEPS = 2**16  # per update: a bound far above any published UTD ratio's, below what would not compile


@dataclass(frozen=True)
class SACConfig(Config):
    """SAC hyperparameters. Defaults are CleanRL's ``sac_continuous_action.py`` (one env, one gradient step per
    env step, 5000 random steps first) on Pendulum-v1 with a budget that solves it. Each field checks its own
    value; ``validate`` the rules between fields. Sweepable fields may be traced (``Config.trace``)."""

    env: str = doc("Pendulum-v1", "gymnax id, brax/<env> or playground/<Env> (extras); continuous actions", known_env)
    total_timesteps: int = doc(20_000, "env steps per seed (rounded down to whole updates)", positive)
    num_envs: int = doc(1, "parallel environments per seed", positive)
    num_steps: int = doc(1, "env steps per environment between the gradient phases of two updates", positive)
    utd_ratio: float = doc(
        1.0, "update-to-data ratio: gradient steps per env step (times num_envs*num_steps: a whole number)", positive
    )
    learning_starts: int = doc(
        5_000, "env steps per seed of uniformly random actions before the first gradient step", non_negative
    )
    buffer_size: int = doc(
        1_000_000, "replay capacity in transitions per seed (capped at total_timesteps: it never holds more)", positive
    )
    batch_size: int = doc(256, "transitions per gradient step", positive)
    gamma: float = doc(0.99, "discount", in_range(0.0, 1.0), sweepable=True)
    tau: float = doc(0.005, "Polyak rate of the target critics: target <- tau * critic + (1 - tau) * target",
                     in_range(0.0, 1.0), sweepable=True)  # fmt: skip
    policy_lr: float = doc(3e-4, "Adam learning rate of the actor", positive, sweepable=True)
    q_lr: float = doc(1e-3, "Adam learning rate of the twin critics", positive, sweepable=True)
    alpha_lr: float = doc(1e-3, "Adam learning rate of log(alpha), the temperature", positive, sweepable=True)
    autotune: bool = doc(True, "learn the temperature alpha towards target_entropy (Haarnoja et al., sec. 5)")
    alpha: float = doc(0.2, "the temperature's initial value (autotune) or its fixed value", positive)
    target_entropy: float | None = doc(
        None, "the entropy alpha is tuned towards; none: -|A| (the paper's choice)", optional(finite)
    )
    reward_scale: float = doc(
        1.0, "multiply rewards by this constant for learning (Brax's reward_scaling); returns stay raw", positive
    )
    normalize_observations: bool = doc(
        False, "standardise the networks' inputs by running statistics of every observation collected (Brax's SAC)"
    )
    obs_clip: float = doc(10.0, "clip normalised observations to [-obs_clip, obs_clip]", positive)
    bootstrap_truncation: bool = doc(
        True, "bootstrap from the true next observation at time limits; false treats truncation as termination"
    )
    hidden_sizes: tuple[int, ...] = doc((256, 256), "hidden layer widths of the actor and of each critic")
    activation: str = doc("relu", "hidden activation: relu or tanh", one_of(*ACTIVATIONS))
    critic_layer_norm: bool = doc(False, "LayerNorm in the critics' hidden layers (MuJoCo Playground's SAC)")
    compute_dtype: str = doc("float32", "hidden layers' matmul dtype: float32 or bfloat16", one_of(*COMPUTE_DTYPES))
    eval_episodes: int = doc(128, "episodes per seed in the final evaluation", positive)
    eval_greedy: bool = doc(True, "evaluate the squashed mean action (as SAC's papers); false samples the policy")

    def validate(self) -> None:
        if self.spec.discrete:
            raise ValueError(
                f"SAC needs continuous actions; {self.env} has {self.spec.action_dim} discrete actions "
                "(train it with ppo or grpo)"
            )
        check_hidden_sizes(self.hidden_sizes)
        if self.total_timesteps < self.steps_per_update:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one update, "
                f"num_envs*num_steps={self.steps_per_update}"
            )
        gradient_steps = self.utd_ratio * self.steps_per_update
        if gradient_steps != round(gradient_steps) or gradient_steps > MAX_GRADIENT_STEPS:
            raise ValueError(
                f"utd_ratio={self.utd_ratio:g} gives {gradient_steps:g} gradient steps per update of "
                f"num_envs*num_steps={self.steps_per_update} env steps; a whole number up to "
                f"{MAX_GRADIENT_STEPS:,} is needed"
            )
        run_steps = self.num_updates * self.steps_per_update
        if self.learning_starts > run_steps:
            raise ValueError(
                f"learning_starts={self.learning_starts} exceeds the run's {run_steps} env steps per seed "
                "(total_timesteps in whole updates): it would never take a gradient step"
            )
        if self.batch_size > self.capacity:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds the replay capacity of {self.capacity} transitions "
                f"(min(buffer_size={self.buffer_size}, the run's env steps))"
            )

    @cached_property
    def spec(self) -> EnvSpec:
        return env_spec(self.env)

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update

    @property
    def gradient_steps(self) -> int:
        """Gradient steps per update (from its ``learning_starts`` on)."""
        return round(self.utd_ratio * self.steps_per_update)

    @property
    def capacity(self) -> int:
        """The replay buffer's size in transitions: ``buffer_size``, or every transition the run makes."""
        return min(self.buffer_size, self.num_updates * self.steps_per_update)

    @property
    def entropy_target(self) -> float:
        return -float(self.spec.action_dim) if self.target_entropy is None else self.target_entropy


class Transition(NamedTuple):
    """What the replay buffer stores per env step (flat ``[...]`` per transition)."""

    obs: jax.Array
    action: jax.Array  # in the env's action box, as the env received it
    reward: jax.Array
    next_obs: jax.Array  # the true next observation: before any auto-reset
    terminated: jax.Array  # the episode ended by the MDP: no bootstrap
    done: jax.Array  # terminated | truncated


@struct.dataclass
class SACTrainState:
    """Every learned quantity and its optimiser, for the actor, the twin critics (and their Polyak targets)
    and the temperature (``{"log_alpha": scalar}``); ``params`` gathers the learned ones."""

    actor: TrainState
    critic: TrainState
    target_critic_params: Any
    temperature: TrainState

    @property
    def params(self) -> dict[str, Any]:
        return {"actor": self.actor.params, "critic": self.critic.params} | self.temperature.params

    @property
    def alpha(self) -> jax.Array:
        return jnp.exp(self.temperature.params["log_alpha"])


class SACState(NamedTuple):
    """The whole state of one seed between updates."""

    train_state: SACTrainState
    buffer: Any  # flashbax's item-buffer state: [capacity] transitions (raw observations), write index, full
    env_state: Any
    obs: jax.Array  # raw
    obs_stats: RunningMeanStd  # of every observation collected; the networks' inputs if normalize_observations
    streams: Streams  # update u uses fold_in(stream, u) (purerl.core.streams)
    last_episode_return: jax.Array  # reported for updates in which no episode ended
    last_episode_length: jax.Array
    config: SACConfig


def make_networks(config: SACConfig) -> tuple[SquashedGaussianActor, StateActionEnsemble]:
    spec = config.spec
    actor = SquashedGaussianActor(
        spec.action_dim, spec.action_low, spec.action_high, config.hidden_sizes, config.activation, config.compute_dtype
    )
    critic = StateActionEnsemble(
        2, config.hidden_sizes, config.activation, config.compute_dtype, config.critic_layer_norm
    )
    return actor, critic


def make_buffer(config: SACConfig) -> Any:
    """Uniform replay over the ``capacity`` newest transitions, added ``num_envs * num_steps`` at a time."""
    return flashbax.make_item_buffer(
        max_length=config.capacity,
        min_length=1,
        sample_batch_size=config.batch_size,
        add_sequences=True,
        add_batches=True,
    )


def make_env(config: SACConfig, num_envs: int, training: bool) -> Any:
    """The env with raw-reward episode statistics, and for training the constant reward scale. No action
    clipping: the policy's actions lie in the box. Observations stay raw (the buffer keeps them so)."""
    env = EpisodeStatistics(vec_env(config.env, num_envs))
    return MultiplyReward(env, config.reward_scale) if training and config.reward_scale != 1.0 else env


def network_input(config: SACConfig, stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
    """``obs`` standardised by ``stats`` (Brax's SAC: replayed observations by the newest statistics) if
    ``normalize_observations``, else as it is."""
    return stats.normalize(obs, config.obs_clip) if config.normalize_observations else obs


def init(key: jax.Array, config: SACConfig) -> SACState:
    """A run's initial state: fresh networks (target critics equal to the critics), optimisers, an empty
    replay buffer and reset environments, all from ``key``'s streams."""
    actor, critic = make_networks(config)
    streams = split_streams(key)
    actor_key, critic_key, reset_key = jax.random.split(streams.init, 3)
    obs = jnp.zeros((1, config.spec.obs_dim), jnp.float32)
    action = jnp.zeros((1, config.spec.action_dim), jnp.float32)
    actor_params = actor.init(actor_key, obs)
    critic_params = critic.init(critic_key, obs, action)
    log_alpha = {"log_alpha": jnp.log(jnp.asarray(config.alpha, jnp.float32))}
    adam = lambda learning_rate: clipped_adam(learning_rate, None, 1e-8)  # noqa: E731  (Adam's default eps)
    train_state = SACTrainState(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=adam(config.policy_lr)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=adam(config.q_lr)),
        target_critic_params=critic_params,
        temperature=TrainState.create(apply_fn=None, params=log_alpha, tx=adam(config.alpha_lr)),
    )
    example = Transition(
        obs[0], action[0], jnp.zeros((), jnp.float32), obs[0], jnp.zeros((), bool), jnp.zeros((), bool)
    )
    obs, env_state = make_env(config, config.num_envs, training=True).reset(reset_key)
    stats = RunningMeanStd.create(obs.shape[1:]).update(obs)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    buffer = make_buffer(config).init(example)
    return SACState(train_state, buffer, env_state, obs, stats, streams, nan, nan, config)


def critic_loss(
    critic_params: Any, state: SACTrainState, config: SACConfig, batch: Transition, key: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The twin critics' soft Bellman residual (paper eqs. 5-6, halved squared error, summed over the two):
    ``y = r + gamma (1 - terminal) (min_j Q_targ_j(s', a') - alpha log pi(a'|s'))``, ``a' ~ pi(.|s')``."""
    actor, critic = make_networks(config)
    next_action, next_log_prob = actor.apply(state.actor.params, batch.next_obs).sample_and_log_prob(seed=key)
    next_q = jnp.min(critic.apply(state.target_critic_params, batch.next_obs, next_action), axis=0)
    terminal = batch.terminated if config.bootstrap_truncation else batch.done
    target = batch.reward + config.gamma * (1.0 - terminal) * (next_q - state.alpha * next_log_prob)
    q = critic.apply(critic_params, batch.obs, batch.action)
    loss = 0.5 * jnp.sum(jnp.mean(jnp.square(q - jax.lax.stop_gradient(target)), axis=-1))
    return loss, {"q_loss": loss, "q_value": jnp.mean(q), "q_target": jnp.mean(target)}


def actor_loss(
    actor_params: Any, state: SACTrainState, config: SACConfig, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The policy's KL to the critics' Boltzmann policy (paper eq. 7, reparameterised as eq. 8):
    ``E[alpha log pi(a|s) - min_j Q_j(s, a)]``, ``a = f(noise; s)``. Returns the log-probs for the temperature."""
    actor, critic = make_networks(config)
    action, log_prob = actor.apply(actor_params, obs).sample_and_log_prob(seed=key)
    q = jnp.min(critic.apply(state.critic.params, obs, action), axis=0)
    loss = jnp.mean(state.alpha * log_prob - q)
    return loss, {"actor_loss": loss, "entropy": -jnp.mean(log_prob), "log_prob": log_prob}


def temperature_loss(params: dict[str, jax.Array], log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """``J(alpha) = E[-alpha (log pi(a|s) + target_entropy)]`` (paper eq. 18): its gradient raises alpha while
    the policy's entropy ``-E[log pi]`` is below the target, and lowers it above."""
    return -jnp.mean(jnp.exp(params["log_alpha"]) * jax.lax.stop_gradient(log_prob + target_entropy))


def gradient_step(
    state: SACTrainState, config: SACConfig, batch: Transition, key: jax.Array
) -> tuple[SACTrainState, dict[str, jax.Array]]:
    """One step of the paper's Algorithm 1 on ``batch``: critics, actor (on the updated critics), temperature
    (on the actor's log-probs), then the targets' Polyak average (``optax.incremental_update``)."""
    critic_key, actor_key = jax.random.split(key)
    grads, q_stats = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, config, batch, critic_key)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, actor_stats = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, config, batch.obs, actor_key)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    log_prob = actor_stats.pop("log_prob")
    alpha_loss, grads = jax.value_and_grad(temperature_loss)(state.temperature.params, log_prob, config.entropy_target)
    if config.autotune:
        state = state.replace(temperature=state.temperature.apply_gradients(grads=grads))
    targets = optax.incremental_update(state.critic.params, state.target_critic_params, config.tau)
    state = state.replace(target_critic_params=targets)
    return state, q_stats | actor_stats | {"alpha_loss": alpha_loss, "alpha": state.alpha}


def collect(runner: SACState, key: jax.Array, random_actions: jax.Array) -> tuple[SACState, Transition, dict]:
    """``num_steps`` env steps in ``num_envs`` envs (a ``lax.scan``, transitions ``[T, B, ...]``): uniform actions
    in the box while ``random_actions``, else samples of the policy."""
    config = runner.config
    spec = config.spec
    actor, _ = make_networks(config)
    env = make_env(config, config.num_envs, training=True)
    params = cast_dense_weights(runner.train_state.actor.params, config.compute_dtype)  # once, not every step

    def env_step(runner: SACState, key: jax.Array):
        uniform_key, policy_key, env_key = jax.random.split(key, 3)
        shape = (config.num_envs, spec.action_dim)
        uniform = jax.random.uniform(uniform_key, shape, minval=spec.action_low, maxval=spec.action_high)
        policy_input = network_input(config, runner.obs_stats, runner.obs)
        sampled = actor.apply(params, policy_input).sample(seed=policy_key)
        action = jnp.where(random_actions, uniform, sampled)
        obs, env_state, reward, terminated, truncated, info = env.step(env_key, runner.env_state, action)
        done = terminated | truncated
        transition = Transition(runner.obs, action, reward, info["final_observation"], terminated, done)
        episodes = {"return": info["episode_return"], "length": info["episode_length"], "done": done,
                    "truncated": done & ~terminated}  # fmt: skip
        runner = runner._replace(env_state=env_state, obs=obs, obs_stats=runner.obs_stats.update(obs))
        return runner, (transition, episodes)

    runner, (traj, episodes) = jax.lax.scan(env_step, runner, jax.random.split(key, config.num_steps))
    return runner, traj, episodes


def update(runner: SACState, index: jax.Array) -> tuple[SACState, dict[str, jax.Array]]:
    """Update ``index``: collect ``num_envs * num_steps`` transitions into the buffer, then (from
    ``learning_starts`` env steps on) ``gradient_steps`` gradient steps on uniform replay samples. Returns the
    state and ``metrics`` (name -> scalar; before the first gradient step the losses are NaN and ``loss``, the
    critics' loss, is 0)."""
    config = runner.config
    env_steps = (index + 1) * config.steps_per_update
    runner, traj, episodes = collect(
        runner, step_key(runner.streams.rollout, index), index * config.steps_per_update < config.learning_starts
    )
    buffer = make_buffer(config)
    flat = jax.tree.map(lambda x: x.reshape(1, config.steps_per_update, *x.shape[2:]), traj)
    runner = runner._replace(buffer=buffer.add(runner.buffer, flat))

    def train(train_state: SACTrainState) -> tuple[SACTrainState, dict[str, jax.Array]]:
        def step(train_state: SACTrainState, key: jax.Array):
            sample_key, loss_key = jax.random.split(key)
            batch = buffer.sample(runner.buffer, sample_key).experience
            normalize = partial(network_input, config, runner.obs_stats)
            batch = batch._replace(obs=normalize(batch.obs), next_obs=normalize(batch.next_obs))
            return gradient_step(train_state, config, batch, loss_key)

        keys = jax.random.split(step_key(runner.streams.minibatch, index), config.gradient_steps)
        train_state, stats = jax.lax.scan(step, train_state, keys)
        return train_state, jax.tree.map(jnp.mean, stats)

    def skip(train_state: SACTrainState) -> tuple[SACTrainState, dict[str, jax.Array]]:
        """Before ``learning_starts``: no losses to report (NaN), the temperature as it is."""
        _, shapes = jax.eval_shape(train, train_state)
        stats = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)
        return train_state, stats | {"alpha": train_state.alpha}

    # The predicate depends on the update index only, the same for every seed, so under vmap it stays a cond.
    trained = env_steps >= config.learning_starts
    train_state, stats = jax.lax.cond(trained, train, skip, runner.train_state)
    runner = runner._replace(train_state=train_state)
    # "loss" (the critics') is what the runner checks for NaN: 0 before the first gradient step, not NaN.
    return episode_metrics(runner, episodes, stats | {"loss": jnp.where(trained, stats["q_loss"], 0.0)}, env_steps)


def episode_metrics(
    runner: SACState, episodes: dict[str, jax.Array], stats: dict[str, jax.Array], env_steps: jax.Array
) -> tuple[SACState, dict[str, jax.Array]]:
    """``stats`` plus the mean raw return and length of the episodes that ended in this update (the last ones
    carried over if none did), how many ended and how many of those a time limit ended (truncated, not
    terminated: the steps ``bootstrap_truncation`` bootstraps), and the env steps so far."""
    episode_return, episode_length, finished = finished_episode_means(
        episodes["done"], episodes["return"], episodes["length"], runner.last_episode_return, runner.last_episode_length
    )
    metrics = stats | {
        "episode_return": episode_return,
        "episode_length": episode_length,
        "episodes_finished": finished,
        "episodes_truncated": jnp.sum(episodes["truncated"]),  # ended by a time limit alone
        "env_steps": env_steps,
    }
    return runner._replace(last_episode_return=episode_return, last_episode_length=episode_length), metrics


def make_train(config: SACConfig) -> Callable[..., tuple[SACState, dict[str, jax.Array]]]:
    """Returns ``train(key, config=config) -> (SACState, metrics)``: ``init`` then a ``lax.scan`` of ``update``
    over all updates; ``metrics`` maps names to ``[num_updates]`` arrays."""

    def train(key: jax.Array, config: SACConfig = config) -> tuple[SACState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, config), jnp.arange(config.num_updates))

    return train


def policy(runner: SACState, obs: jax.Array) -> TanhSquashedGaussian:
    """One seed's policy at raw observations ``obs [N, obs_dim]`` (normalised by the run's frozen statistics
    if ``normalize_observations``)."""
    actor, _ = make_networks(runner.config)
    return actor.apply(runner.train_state.actor.params, network_input(runner.config, runner.obs_stats, obs))


def evaluate(runner: SACState, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """``{"returns": [E], "lengths": [E]}`` for E = eval_episodes: one episode in each of E fresh environments
    (``evaluate_episodes``), with the squashed mean action (``eval_greedy``, the default) or samples. ``key``
    defaults to the seed's evaluation stream, which training never draws from."""
    config = runner.config
    key = runner.streams.evaluation if key is None else key
    return evaluate_episodes(
        lambda obs: policy(runner, obs),
        make_env(config, config.eval_episodes, training=False),
        key,
        config.spec.max_steps_in_episode,
        config.eval_greedy,
    )
