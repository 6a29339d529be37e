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
trains one agent per key, and seed ``i`` of that run equals ``train(keys[i])``. As in PPO, ``init`` and
``update`` are the two halves that ``train`` scans, for runs in checkpointed chunks, and ``update`` reads
every setting from the one config its state carries.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purerl.control.envs import ClipAction, EnvSpec, env_spec, known_env, vec_env
from purerl.control.evaluation import evaluate_episodes
from purerl.control.policy import check_network_fields, make_network
from purerl.core.config import (
    Config,
    at_least,
    doc,
    in_range,
    non_negative,
    one_of,
    optional,
    positive,
    require_divisible,
)
from purerl.core.gae import gae
from purerl.core.group_advantages import ADVANTAGE_SCALES, group_advantages, zero_spread_fraction
from purerl.core.kl import KL_LOSS_ESTIMATOR_HELP, kl_estimate, kl_k3, require_loss_estimator
from purerl.core.losses import LOSS_AGGREGATIONS, aggregate_loss, clipped_surrogate_loss, masked_mean
from purerl.core.minibatch import minibatch_epochs
from purerl.core.networks import COMPUTE_DTYPES, ActorCritic, cast_dense_weights
from purerl.core.optim import clipped_adam, linear_annealing, set_learning_rate
from purerl.core.streams import Streams, split_streams, step_key

ADVANTAGES = ("outcome", "reward_to_go")


@dataclass(frozen=True)
class GRPOConfig(Config):
    """GRPO hyperparameters. Defaults are the CartPole-v1 setting tuned in experiments/grpo/README.md. Each
    field checks its own value; ``validate`` checks the rules between fields. Sweepable fields may be traced
    (``Config.trace``); a traced beta needs the reference pass compiled in, so its base config must have
    beta > 0 (a sweep builds its base config with the largest value)."""

    env: str = doc("CartPole-v1", "gymnax environment id, brax/<env> or playground/<Env> (extras)", known_env)
    num_updates: int = doc(50, "updates (each one group batch of whole episodes)", positive)
    total_timesteps: int | None = doc(
        None,
        "env-step budget per seed: a seed that has used it stops changing (none = every update trains)",
        optional(positive),
    )
    num_groups: int = doc(8, "groups per update: distinct initial states", positive)
    group_size: int = doc(
        4,
        "episodes per group, all from the group's initial state (G >= 2)",
        at_least(2, "(a group of one has no baseline)"),
    )
    update_epochs: int = doc(4, "passes over each group batch (mu)", positive)
    num_minibatches: int = doc(
        4, "minibatches of whole episodes per epoch; must divide num_groups*group_size", positive
    )
    learning_rate: float = doc(1e-2, "Adam learning rate (initial value when annealed)", positive, sweepable=True)
    anneal_lr: bool = doc(False, "anneal the learning rate linearly to 0 over the updates (or the env-step budget)")
    adam_eps: float = doc(1e-5, "Adam epsilon", positive)
    max_grad_norm: float = doc(0.5, "global gradient-norm clip", positive)
    advantage: str = doc(
        "outcome", "outcome: normalised episode return; reward_to_go: normalised per time index", one_of(*ADVANTAGES)
    )
    advantage_scale: str = doc(
        "std", "std: divide by the group's std; none: mean-centred only (Dr. GRPO)", one_of(*ADVANTAGE_SCALES)
    )
    gamma: float = doc(
        1.0, "discount of the returns that are compared within a group", in_range(0.0, 1.0), sweepable=True
    )
    clip_eps: float = doc(
        0.2, "surrogate clip range below 1 (and above, unless clip_eps_high is set)", non_negative, sweepable=True
    )
    clip_eps_high: float | None = doc(
        None,
        "surrogate clip range above 1 (DAPO's clip-higher); none = clip_eps",
        optional(non_negative),
        sweepable=True,
    )
    ent_coef: float = doc(0.0, "entropy bonus coefficient", non_negative, sweepable=True)
    beta: float = doc(
        0.0,
        "coefficient of the KL penalty to the reference policy; 0 skips the reference pass",
        non_negative,
        sweepable=True,
    )
    kl_estimator: str = doc("k3", KL_LOSS_ESTIMATOR_HELP, require_loss_estimator)
    ref_update_interval: int = doc(
        0, "reset the reference to the current policy every this many updates (0 = never)", non_negative
    )
    loss_aggregation: str = doc(
        "grpo",
        "grpo: per-episode mean then mean; dapo: mean over steps; dr_grpo: sum / const",
        one_of(*LOSS_AGGREGATIONS),
    )
    hidden_sizes: tuple[int, ...] = doc((64, 64), "hidden layer widths of the policy MLP")
    activation: str = doc("tanh", "hidden activation: tanh or relu")
    log_std_init: float | None = doc(None, "initial log-std of the Gaussian policy (continuous actions only; none = 0)")
    compute_dtype: str = doc(
        "float32",
        "hidden layers' matmul and activation dtype: float32, or bfloat16 (params, heads and losses stay "
        "float32; for a GPU at many seeds: fewer bytes per layer; about 2x slower on a CPU)",
        one_of(*COMPUTE_DTYPES),
    )
    eval_episodes: int = doc(128, "episodes per seed in the final evaluation", positive)
    eval_greedy: bool = doc(False, "evaluate the policy's mode instead of sampling")

    def validate(self) -> None:
        require_divisible("num_groups*group_size", self.num_episodes, "num_minibatches", self.num_minibatches)
        check_network_fields(self)
        if self.spec.max_steps_in_episode is None:
            raise ValueError(f"GRPO runs every episode to its end, but {self.env} has no finite horizon")

    def check_traceable(self, name: str) -> None:
        if name == "clip_eps_high" and self.clip_eps_high is None:
            raise ValueError("clip_eps_high can be swept only when the base config sets it (none compiles no branch)")
        if name == "beta" and not self.beta > 0:
            raise ValueError("beta can be swept only when the base config has beta > 0 (0 compiles no reference pass)")

    @property
    def kl_penalty(self) -> bool:
        """Whether the loss has the KL term (and the update its reference pass): beta > 0, or beta traced."""
        return "beta" in self.traced or self.beta > 0

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
    config: GRPOConfig  # the run's config: its swept fields are leaves (per-run arrays), the rest static


def make_env(config: GRPOConfig, num_envs: int, group_size: int = 1) -> Any:
    env = vec_env(config.env, num_envs, group_size)
    if not config.spec.discrete:
        env = ClipAction(env, config.spec.action_low, config.spec.action_high)
    return env


def rollout(env: Any, network: ActorCritic, params: Any, key: jax.Array, horizon: int) -> Trajectory:
    """One episode in each env of ``env`` (a grouped ``VecEnv`` stack), as a ``horizon``-step scan."""
    reset_key, steps_key = jax.random.split(key)
    obs, env_state = env.reset(reset_key)  # each block of group_size envs shares one initial state
    params = cast_dense_weights(params, network.compute_dtype)  # once, not at every step

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
    if config.kl_penalty:
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


def init(key: jax.Array, config: GRPOConfig) -> GRPOState:
    """A run's initial state: fresh policy parameters and optimiser from ``key``'s init stream. ``config`` is
    carried in the state (traced for a sweep point, ``Config.trace``), as in PPO's ``init``."""
    network = make_network(config)
    optimizer = clipped_adam(config.learning_rate, config.max_grad_norm, config.adam_eps)
    streams = split_streams(key)
    params_key, _ = jax.random.split(streams.init)  # PPO's split: the same initial policy for the same key
    obs = jnp.zeros((1, config.spec.obs_dim), jnp.float32)
    # Only the policy half of ActorCritic is initialised and applied: GRPO's parameters hold no critic.
    params = network.init(params_key, obs, method=ActorCritic.policy)
    train_state = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
    ref_params = params if config.kl_penalty else None
    return GRPOState(train_state, ref_params, streams, jnp.zeros((), jnp.int32), config)


def update(state: GRPOState, index: jax.Array) -> tuple[GRPOState, dict[str, jax.Array]]:
    """One GRPO iteration (Shao et al. 2024, Algorithm 1, one inner step), update ``index``:

    1. sample ``num_groups`` groups of ``group_size`` whole episodes, each group from one initial state;
    2. give every step its group-relative advantage;
    3. optimise the clipped surrogate (+ beta x KL to the reference) for ``update_epochs`` epochs of
       minibatches of whole episodes.

    Returns the new state and ``metrics``, a name -> scalar dict (``update_metrics``).
    """
    config = state.config
    network = make_network(config)
    env = make_env(config, config.num_episodes, config.group_size)
    params = state.train_state.params
    trajectory = rollout(env, network, params, step_key(state.streams.rollout, index), config.horizon)
    batch = {
        "obs": trajectory.obs,
        "action": trajectory.action,
        "log_prob": trajectory.log_prob,
        "advantages": compute_advantages(config, trajectory.reward, trajectory.valid),
        "valid": trajectory.valid,
    }
    ref_params = state.ref_params
    if config.kl_penalty:
        if config.ref_update_interval > 0:
            refresh = (index > 0) & (index % config.ref_update_interval == 0)
            ref_params = jax.tree.map(lambda new, old: jnp.where(refresh, new, old), params, ref_params)
        ref_policy = network.apply(ref_params, trajectory.obs, method=ActorCritic.policy)
        batch["ref_log_prob"] = ref_policy.log_prob(trajectory.action)
    if config.total_timesteps is None:
        learning_rate = linear_annealing(config.learning_rate, index, config.num_updates, config.anneal_lr)
    else:  # anneal over the env-step budget, as PPO does over its (fixed-size) updates
        budget = config.total_timesteps
        learning_rate = linear_annealing(config.learning_rate, state.env_steps, budget, config.anneal_lr)
    # Minibatches of whole episodes: shuffle the episode axis (1), keep time-major [T, M, ...] blocks.
    train_state, stats, _ = minibatch_epochs(
        partial(sgd_step, network, config),
        set_learning_rate(state.train_state, learning_rate),
        batch,
        step_key(state.streams.minibatch, index),
        config.update_epochs,
        config.num_minibatches,
        axis=1,
    )
    new_state = state._replace(
        train_state=train_state, ref_params=ref_params, env_steps=state.env_steps + jnp.sum(trajectory.valid)
    )
    return update_metrics(state, new_state, trajectory, stats, learning_rate)


def sgd_step(network: ActorCritic, config: GRPOConfig, train_state: TrainState, minibatch: dict[str, jax.Array]):
    """One Adam step on ``grpo_loss`` of a minibatch of whole episodes."""
    grads, stats = jax.grad(grpo_loss, has_aux=True)(train_state.params, network, config, minibatch)
    return train_state.apply_gradients(grads=grads), stats


def update_metrics(
    state: GRPOState, new_state: GRPOState, trajectory: Trajectory, stats: dict[str, jax.Array], learning_rate
) -> tuple[GRPOState, dict[str, jax.Array]]:
    """The update's scalars (loss statistics averaged over epochs and minibatches; the batch's raw episode
    returns and lengths, their spread within groups), and the state to keep: with an env-step budget, a
    seed that had already used it keeps ``state`` whole."""
    config = state.config
    metrics = {name: jnp.mean(jnp.mean(values, axis=1)) for name, values in stats.items()}
    returns = jnp.sum(trajectory.reward, axis=0)  # raw, undiscounted episode returns [B]
    lengths = jnp.sum(trajectory.valid, axis=0)
    grouped_returns = returns.reshape(config.num_groups, config.group_size)
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


def make_train(config: GRPOConfig) -> Callable[..., tuple[GRPOState, dict[str, jax.Array]]]:
    """Returns ``train(key, config=config) -> (GRPOState, metrics)``: ``init`` then a ``lax.scan`` of
    ``update`` over all updates; ``metrics`` maps names to ``[num_updates]`` arrays. Pass a traced config
    (``Config.trace``) to train a sweep point."""

    def train(key: jax.Array, config: GRPOConfig = config) -> tuple[GRPOState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, config), jnp.arange(config.num_updates))

    return train


def policy(state: GRPOState, obs: jax.Array) -> Any:
    """One seed's policy at ``obs [N, obs_dim]``: a distribution over actions (take a seed out of a vmapped
    run with ``purerl.control.evaluation.select_seed``)."""
    return make_network(state.config).apply(state.train_state.params, obs, method=ActorCritic.policy)


def evaluate(state: GRPOState, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """``{"returns": [E], "lengths": [E]}`` for E = eval_episodes: one episode in each of E fresh
    environments, with the stochastic policy (or its mode if ``eval_greedy``). ``key`` defaults to the seed's
    own evaluation stream (``purerl.core.streams``)."""
    config = state.config
    key = state.streams.evaluation if key is None else key
    eval_env = make_env(config, config.eval_episodes)
    params = cast_dense_weights(state.train_state.params, config.compute_dtype)  # once, not at every step
    state = state._replace(train_state=state.train_state.replace(params=params))
    return evaluate_episodes(partial(policy, state), eval_env, key, config.horizon, config.eval_greedy)
