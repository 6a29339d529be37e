"""GRPO on gymnax: critic-free, group-relative policy optimisation; the whole run is one pure ``train(key)``.

GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300) replaces PPO's learned critic with a group baseline. In
control a "prompt" is an initial state: each update resets ``num_groups`` groups of ``group_size``
environments, every environment of a group from the same reset key (the same initial state), and rolls
each out with its own action and env keys until its episode ends. The rollout is a fixed-length scan of
the env's ``max_steps_in_episode`` steps, time-major ``[T, B]`` with ``B = num_groups * group_size``; steps
after an episode's first ``terminated | truncated`` are masked out (gymnax auto-resets there, and those
steps belong to no episode of the group). Episode returns (``outcome``) or per-step returns-to-go
(``reward_to_go``) are normalised within each group to give the advantages; the loss is PPO's clipped
surrogate plus an optional KL penalty to a reference policy, aggregated over each minibatch's valid steps.

``make_train(config)`` returns ``train(key) -> (GRPOState, metrics)``; ``jax.jit(jax.vmap(train))(keys)``
trains one agent per key, and seed ``i`` of that run equals ``train(keys[i])``. As in PPO, ``make_init`` and
``make_update`` are the two halves that ``train`` scans, for runs in checkpointed chunks.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purerl.control.envs import ClipAction, EnvSpec, VecEnv, check_env_name, env_spec
from purerl.control.evaluation import evaluate_episodes
from purerl.control.policy import check_network_fields, make_network
from purerl.core.config import (
    check_hyperparams,
    doc,
    require_choice,
    require_divisible,
    require_in_range,
    require_non_negative,
    require_positive,
    with_hyperparams,
)
from purerl.core.gae import gae
from purerl.core.group_advantages import ADVANTAGE_SCALES, group_advantages, zero_spread_fraction
from purerl.core.kl import KL_LOSS_ESTIMATOR_HELP, kl_estimate, kl_k3, require_loss_estimator
from purerl.core.losses import LOSS_AGGREGATIONS, aggregate_loss, clipped_surrogate_loss, masked_mean
from purerl.core.minibatch import minibatch_epochs
from purerl.core.networks import ActorCritic
from purerl.core.optim import clipped_adam, linear_annealing, set_learning_rate
from purerl.core.streams import Streams, split_streams, step_key

ADVANTAGES = ("outcome", "reward_to_go")


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO hyperparameters. Defaults are the CartPole-v1 setting tuned in experiments/grpo/README.md."""

    # Fields a sweep may vary inside one compiled program (carried as arrays in the state; see ``make_init``).
    # A swept beta needs the reference pass compiled in: the sweep builds its base config with the largest beta.
    SWEEPABLE: ClassVar[tuple[str, ...]] = ("learning_rate", "gamma", "clip_eps", "clip_eps_high", "ent_coef", "beta")

    env: str = doc("CartPole-v1", "gymnax environment id")
    num_updates: int = doc(50, "updates (each one group batch of whole episodes)")
    total_timesteps: int | None = doc(
        None, "env-step budget per seed: a seed that has used it stops changing (none = every update trains)"
    )
    num_groups: int = doc(8, "groups per update: distinct initial states")
    group_size: int = doc(4, "episodes per group, all from the group's initial state (G >= 2)")
    update_epochs: int = doc(4, "passes over each group batch (mu)")
    num_minibatches: int = doc(4, "minibatches of whole episodes per epoch; must divide num_groups*group_size")
    learning_rate: float = doc(1e-2, "Adam learning rate (initial value when annealed)")
    anneal_lr: bool = doc(False, "anneal the learning rate linearly to 0 over the updates (or the env-step budget)")
    adam_eps: float = doc(1e-5, "Adam epsilon")
    max_grad_norm: float = doc(0.5, "global gradient-norm clip")
    advantage: str = doc("outcome", "outcome: normalised episode return; reward_to_go: normalised per time index")
    advantage_scale: str = doc("std", "std: divide by the group's std; none: mean-centred only (Dr. GRPO)")
    gamma: float = doc(1.0, "discount of the returns that are compared within a group")
    clip_eps: float = doc(0.2, "surrogate clip range below 1 (and above, unless clip_eps_high is set)")
    clip_eps_high: float | None = doc(None, "surrogate clip range above 1 (DAPO's clip-higher); none = clip_eps")
    ent_coef: float = doc(0.0, "entropy bonus coefficient")
    beta: float = doc(0.0, "coefficient of the KL penalty to the reference policy; 0 skips the reference pass")
    kl_estimator: str = doc("k3", KL_LOSS_ESTIMATOR_HELP)
    ref_update_interval: int = doc(0, "reset the reference to the current policy every this many updates (0 = never)")
    loss_aggregation: str = doc("grpo", "grpo: per-episode mean then mean; dapo: mean over steps; dr_grpo: sum / const")
    hidden_sizes: tuple[int, ...] = doc((64, 64), "hidden layer widths of the policy MLP")
    activation: str = doc("tanh", "hidden activation: tanh or relu")
    log_std_init: float | None = doc(None, "initial log-std of the Gaussian policy (continuous actions only; none = 0)")
    eval_episodes: int = doc(128, "episodes per seed in the final evaluation")
    eval_greedy: bool = doc(False, "evaluate the policy's mode instead of sampling")

    def __post_init__(self) -> None:
        check_env_name(self.env)
        for name in (
            "num_updates",
            "num_groups",
            "update_epochs",
            "num_minibatches",
            "learning_rate",
            "adam_eps",
            "max_grad_norm",
            "eval_episodes",
        ):
            require_positive(name, getattr(self, name))
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one has no baseline), got {self.group_size!r}")
        for name in ("clip_eps", "ent_coef", "beta", "ref_update_interval"):
            require_non_negative(name, getattr(self, name))
        if self.clip_eps_high is not None:
            require_non_negative("clip_eps_high", self.clip_eps_high)
        if self.total_timesteps is not None:
            require_positive("total_timesteps", self.total_timesteps)
        require_in_range("gamma", self.gamma, 0.0, 1.0)
        require_divisible("num_groups*group_size", self.num_episodes, "num_minibatches", self.num_minibatches)
        require_choice("advantage", self.advantage, ADVANTAGES)
        require_choice("advantage_scale", self.advantage_scale, ADVANTAGE_SCALES)
        require_loss_estimator("kl_estimator", self.kl_estimator)
        require_choice("loss_aggregation", self.loss_aggregation, LOSS_AGGREGATIONS)
        check_network_fields(self)
        if self.spec.max_steps_in_episode is None:
            raise ValueError(f"GRPO runs every episode to its end, but {self.env} has no finite horizon")

    @cached_property
    def spec(self) -> EnvSpec:
        return env_spec(self.env)

    @property
    def num_episodes(self) -> int:
        """Episodes per update, ``B = num_groups * group_size``."""
        return self.num_groups * self.group_size

    @property
    def horizon(self) -> int:
        """Steps in every rollout, ``T``: the env's ``max_steps_in_episode``."""
        return self.spec.max_steps_in_episode

    @property
    def steps_per_update(self) -> None:
        """Env steps per update vary with episode lengths (``metrics["env_steps"]`` counts them)."""
        return None


class Trajectory(NamedTuple):
    """One group batch, ``[T, B, ...]``; every field is zero (or junk) where ``valid`` is false."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array  # of the rollout policy
    reward: jax.Array  # raw, zeroed after the episode's end
    valid: jax.Array  # the step belongs to the episode that started at t = 0


class GRPOState(NamedTuple):
    """Everything a run carries between updates: the whole state of one seed. No env state: every update
    starts fresh episodes."""

    train_state: TrainState
    ref_params: Any  # the reference policy of the KL penalty (None when beta = 0)
    streams: Streams  # the seed's random streams; update u uses fold_in(stream, u) (purerl.core.streams)
    env_steps: jax.Array  # valid env steps taken so far
    hparams: dict[str, jax.Array]  # this run's values of swept fields (empty when nothing is swept)


def make_env(config: GRPOConfig, num_envs: int, group_size: int = 1) -> Any:
    env = VecEnv(config.env, num_envs, group_size)
    if not config.spec.discrete:
        env = ClipAction(env, config.spec.action_low, config.spec.action_high)
    return env


def rollout(env: Any, network: ActorCritic, params: Any, key: jax.Array, horizon: int) -> Trajectory:
    """One episode in each env of ``env`` (a grouped ``VecEnv`` stack), as a ``horizon``-step scan."""
    reset_key, steps_key = jax.random.split(key)
    obs, env_state = env.reset(reset_key)  # each block of group_size envs shares one initial state

    def step(carry, step_key):
        obs, env_state, running = carry
        action_key, env_key = jax.random.split(step_key)
        dist = network.apply(params, obs, method=ActorCritic.policy)
        action = dist.sample(seed=action_key)  # one independent sample per env
        log_prob = dist.log_prob(action)
        next_obs, env_state, reward, terminated, truncated, _ = env.step(env_key, env_state, action)
        transition = Trajectory(obs, action, log_prob, reward * running, running)
        return (next_obs, env_state, running & ~(terminated | truncated)), transition

    carry = (obs, env_state, jnp.ones(env.num_envs, bool))
    _, trajectory = jax.lax.scan(step, carry, jax.random.split(steps_key, horizon))
    return trajectory


def compute_advantages(config: GRPOConfig, reward: jax.Array, valid: jax.Array) -> jax.Array:
    """Group-relative advantages ``[T, B]`` of a group batch (``reward``, ``valid``: ``[T, B]``, consecutive
    blocks of ``group_size`` episodes form a group)."""
    steps, num_episodes = reward.shape
    zeros = jnp.zeros_like(reward)
    # GAE with V = 0 and lambda = 1 is the Monte-Carlo return-to-go; rewards after an episode's end are 0.
    returns_to_go, _ = gae(reward, zeros, zeros, zeros, zeros, config.gamma, 1.0)
    if config.advantage == "outcome":
        # The whole episode's return, normalised within its group, is every step's advantage.
        returns = returns_to_go[0].reshape(config.num_groups, config.group_size)
        advantages = group_advantages(returns, scale=config.advantage_scale).reshape(num_episodes)
        return jnp.broadcast_to(advantages, (steps, num_episodes)) * valid
    # Process-style: at each time index, the returns-to-go of the group's episodes still running then.
    grouped = (steps, config.num_groups, config.group_size)
    advantages = group_advantages(returns_to_go.reshape(grouped), valid.reshape(grouped), scale=config.advantage_scale)
    return advantages.reshape(steps, num_episodes)


def grpo_loss(
    params: Any, network: ActorCritic, config: GRPOConfig, minibatch: dict[str, jax.Array]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO's loss on a minibatch of whole episodes, ``[T, M, ...]`` arrays ``obs, action, log_prob`` (at
    rollout time), ``advantages``, ``valid`` and, when ``beta > 0``, ``ref_log_prob``.

    Per step: clipped surrogate - ent_coef * entropy + beta * KL estimate to the reference, reduced over the
    valid steps by ``config.loss_aggregation``.
    """
    valid = minibatch["valid"]
    dist = network.apply(params, minibatch["obs"], method=ActorCritic.policy)
    log_prob = dist.log_prob(minibatch["action"])
    log_ratio = log_prob - minibatch["log_prob"]
    policy_loss, clipped = clipped_surrogate_loss(
        log_ratio, minibatch["advantages"], config.clip_eps, config.clip_eps_high
    )
    entropy = dist.entropy()
    per_step = policy_loss - config.ent_coef * entropy
    stats = {}
    if "ref_log_prob" in minibatch:  # beta > 0 (a Python branch: beta may be a traced sweep value here)
        # Samples come from pi, so KL(pi || pi_ref) takes log_ratio = log pi_ref - log pi (purerl.core.kl).
        kl_ref = kl_estimate(minibatch["ref_log_prob"] - log_prob, config.kl_estimator)
        per_step = per_step + config.beta * kl_ref
        stats["kl_ref"] = masked_mean(kl_ref, valid)

    def aggregate(x: jax.Array) -> jax.Array:
        return aggregate_loss(x, valid, config.loss_aggregation, config.horizon)

    loss = aggregate(per_step)
    stats |= {
        "loss": loss,
        "policy_loss": aggregate(policy_loss),
        "entropy": masked_mean(entropy, valid),
        "approx_kl": masked_mean(kl_k3(log_ratio), valid),  # KL(pi_old || pi_new)
        "clip_fraction": masked_mean(clipped, valid),
    }
    return loss, stats


def make_init(config: GRPOConfig) -> Callable[..., GRPOState]:
    """Returns ``init(key, hparams=None) -> GRPOState``: fresh policy parameters and optimiser.

    ``hparams`` maps ``GRPOConfig.SWEEPABLE`` fields to scalars that replace the config's values for this run;
    they live in the state, so ``jax.vmap(init)(keys, hparams)`` sets up one sweep point per run.
    """
    network = make_network(config)
    optimizer = clipped_adam(config.learning_rate, config.max_grad_norm, config.adam_eps)

    def init(key: jax.Array, hparams: dict[str, Any] | None = None) -> GRPOState:
        hparams = {} if hparams is None else hparams
        check_hyperparams(config, hparams)
        if "clip_eps_high" in hparams and config.clip_eps_high is None:
            raise ValueError("clip_eps_high can be swept only when the base config sets it (none compiles no branch)")
        if "beta" in hparams and not config.beta > 0:
            raise ValueError("beta can be swept only when the base config has beta > 0 (0 compiles no reference pass)")
        streams = split_streams(key)
        params_key, _ = jax.random.split(streams.init)  # PPO's split: the same initial policy for the same key
        obs = jnp.zeros((1, config.spec.obs_dim), jnp.float32)
        # Only the policy half of ActorCritic is initialised and applied: GRPO's parameters hold no critic.
        params = network.init(params_key, obs, method=ActorCritic.policy)
        train_state = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
        ref_params = params if config.beta > 0 else None
        hparams = {name: jnp.asarray(value, jnp.float32) for name, value in hparams.items()}
        return GRPOState(train_state, ref_params, streams, jnp.zeros((), jnp.int32), hparams)

    return init


def make_update(config: GRPOConfig) -> Callable[[GRPOState, jax.Array], tuple[GRPOState, dict[str, jax.Array]]]:
    """Returns ``update(state, update_index) -> (state, metrics)``: one group batch and its epochs of
    minibatch steps; ``metrics`` maps names to scalars; ``episode_return`` is the mean raw return of the
    batch's episodes."""
    network = make_network(config)
    env = make_env(config, config.num_episodes, config.group_size)
    num_updates, horizon = config.num_updates, config.horizon

    def policy(params, obs):
        return network.apply(params, obs, method=ActorCritic.policy)

    # ``hp`` below is the config with this run's swept hyperparameters (traced) in place.
    def minibatch_step(hp: GRPOConfig, train_state: TrainState, minibatch):
        grads, stats = jax.grad(grpo_loss, has_aux=True)(train_state.params, network, hp, minibatch)
        return train_state.apply_gradients(grads=grads), stats

    def update_step(state: GRPOState, update: jax.Array) -> tuple[GRPOState, dict[str, jax.Array]]:
        hp = with_hyperparams(config, state.hparams)
        params = state.train_state.params
        trajectory = rollout(env, network, params, step_key(state.streams.rollout, update), horizon)
        valid = trajectory.valid
        batch = {
            "obs": trajectory.obs,
            "action": trajectory.action,
            "log_prob": trajectory.log_prob,
            "advantages": compute_advantages(hp, trajectory.reward, valid),
            "valid": valid,
        }
        ref_params = state.ref_params
        if config.beta > 0:
            if config.ref_update_interval > 0:
                refresh = (update > 0) & (update % config.ref_update_interval == 0)
                ref_params = jax.tree.map(lambda new, old: jnp.where(refresh, new, old), params, ref_params)
            batch["ref_log_prob"] = policy(ref_params, trajectory.obs).log_prob(trajectory.action)

        if config.total_timesteps is None:
            learning_rate = linear_annealing(hp.learning_rate, update, num_updates, config.anneal_lr)
        else:  # anneal over the env-step budget, as PPO does over its (fixed-size) updates
            budget = config.total_timesteps
            learning_rate = linear_annealing(hp.learning_rate, state.env_steps, budget, config.anneal_lr)
        train_state = set_learning_rate(state.train_state, learning_rate)
        # Minibatches of whole episodes: shuffle the episode axis (1), keep time-major [T, M, ...] blocks.
        train_state, stats, _ = minibatch_epochs(
            partial(minibatch_step, hp),
            train_state,
            batch,
            step_key(state.streams.minibatch, update),
            config.update_epochs,
            config.num_minibatches,
            axis=1,
        )
        metrics = {name: jnp.mean(jnp.mean(values, axis=1)) for name, values in stats.items()}

        returns = jnp.sum(trajectory.reward, axis=0)  # raw, undiscounted episode returns [B]
        lengths = jnp.sum(valid, axis=0)
        grouped_returns = returns.reshape(config.num_groups, config.group_size)
        new_state = GRPOState(train_state, ref_params, state.streams, state.env_steps + jnp.sum(lengths), state.hparams)
        if config.total_timesteps is not None:
            # Episodes end at different times, so seeds reach the env-step budget at different updates. A seed
            # past its budget keeps its whole state (its final policy is the one at the budget) while the other
            # vmapped seeds go on; its later rollouts still run and report that frozen policy's returns.
            training = state.env_steps < config.total_timesteps
            new_state = jax.tree.map(lambda new, old: jnp.where(training, new, old), new_state, state)
            metrics["training"] = training.astype(jnp.float32)
        metrics |= {
            "episode_return": jnp.mean(returns),
            "episode_length": jnp.mean(lengths.astype(jnp.float32)),
            "group_return_std": jnp.mean(jnp.std(grouped_returns, axis=1, ddof=1)),
            "zero_spread_fraction": zero_spread_fraction(grouped_returns),
            "learning_rate": learning_rate,
            "env_steps": new_state.env_steps,
        }
        return new_state, metrics

    return update_step


def make_train(config: GRPOConfig) -> Callable[..., tuple[GRPOState, dict[str, jax.Array]]]:
    """Returns ``train(key, hparams=None) -> (GRPOState, metrics)``: ``init`` then a ``lax.scan`` of
    ``update`` over all updates; ``metrics`` maps names to ``[num_updates]`` arrays."""
    init, update = make_init(config), make_update(config)

    def train(key: jax.Array, hparams: dict[str, Any] | None = None) -> tuple[GRPOState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, hparams), jnp.arange(config.num_updates))

    return train


def make_policy(config: GRPOConfig) -> Callable[[GRPOState, jax.Array], Any]:
    """Returns ``policy(state, obs [N, obs_dim]) -> distribution over actions`` of one seed's state (take a
    seed out of a vmapped run with ``purerl.control.evaluation.select_seed``)."""
    network = make_network(config)

    def policy(state: GRPOState, obs: jax.Array):
        return network.apply(state.train_state.params, obs, method=ActorCritic.policy)

    return policy


def make_evaluate(config: GRPOConfig) -> Callable[..., dict[str, jax.Array]]:
    """Returns ``evaluate(state, key=None) -> {"returns": [E], "lengths": [E]}`` for E = eval_episodes: one
    episode in each of E fresh environments, with the stochastic policy (or its mode if ``eval_greedy``).
    ``key`` defaults to the seed's own evaluation stream (``purerl.core.streams``)."""
    policy = make_policy(config)
    eval_env = make_env(config, config.eval_episodes)

    def evaluate(state: GRPOState, key: jax.Array | None = None) -> dict[str, jax.Array]:
        key = state.streams.evaluation if key is None else key
        return evaluate_episodes(partial(policy, state), eval_env, key, config.horizon, config.eval_greedy)

    return evaluate
