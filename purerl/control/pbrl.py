"""Reward learning from comparisons of trajectory segments (Christiano et al. 2017, "Deep reinforcement learning
from human preferences"), with a simulated teacher, and PPO on the learned reward: RLHF's basic loop on control.

One update (inside one jit, vmapped over seeds like PPO's):

1. PPO's rollout (``purerl.control.ppo.rollout``): ``num_steps`` steps in each of ``num_envs`` envs. The env's
   true reward is recorded (the teacher reads it, and the returns reported are true returns) but never trained on.
2. On a query update (every ``query_interval`` updates, the first ``query_rounds`` times): segments of
   ``segment_length`` consecutive steps of one env are cut from this rollout (start and env uniform); the steps
   after a segment's first episode end are masked out (that episode is over: they count for neither the
   teacher nor the model). ``queries_per_round`` pairs are chosen (``random``, or by ``disagreement``: the
   pairs among ``candidates_per_query`` times as many on which the ensemble members' preference
   probabilities have the largest std, Christiano et al. section 2.2.4), labelled by the teacher and added to
   the labelled pairs; the reward model then takes ``reward_steps`` Adam steps on minibatches of all of them.
3. PPO's learning step (``purerl.control.ppo.learn``) on that rollout with the reward replaced by the ensemble's
   mean learned reward at each (observation, action), divided by its root mean square over the rollout. It is
   not centred: where episodes end early, the reward's sign is what says whether staying alive is good.

The simulated teacher (B-Pref's, Lee et al. 2021, section 3.1): a segment's return is
``R = sum_t gamma^(L-1-t) r_t`` over its unmasked steps (``gamma = teacher_myopia``; 1 is not myopic, less
weighs the earlier steps less); it prefers segment A with probability ``sigmoid(rationality * (R_A - R_B))``
(``teacher_rationality``; none: perfectly rational, the higher return, 0.5 on a tie), and then gives the
opposite label with probability ``label_noise``.

The reward model: ``ensemble_size`` MLPs on [raw observation, one-hot action (or the action, clipped to the
box)] (``purerl.core.networks.StateActionEnsemble``), a segment's predicted return the sum over its unmasked
steps, each member trained on its own minibatches with the core Bradley-Terry loss
(``purerl.core.preference.bradley_terry_loss``, the LM reward model's): a label y in {0, 0.5, 1} costs
``y * BT(R_A, R_B) + (1 - y) * BT(R_B, R_A)``.

Measured on each query round's ``heldout_pairs`` fresh pairs before the model trains on that round, carried
to the updates between: the model's accuracy against the perfectly rational, non-myopic teacher (ties left
out), and the correlation of its predicted segment returns with the true ones.

Streams: PPO's (``init``, ``rollout``, ``minibatch``, ``evaluation``); the reward model's parameters from
``head``; segments, labels, selection and the reward model's minibatches of update u from
``step_key(pairs, u)``.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purerl.control import ppo
from purerl.control.policy import check_hidden_sizes, make_network
from purerl.core.config import doc, in_range, one_of, optional, positive
from purerl.core.networks import StateActionEnsemble
from purerl.core.optim import clipped_adam
from purerl.core.preference import bradley_terry_loss
from purerl.core.spread import range_has_spread
from purerl.core.streams import step_key

QUERY_SELECTIONS = ("random", "disagreement")


@dataclass(frozen=True)
class PbRLConfig(ppo.PPOConfig):
    """PPO's settings (on the learned reward) and the preference loop's."""

    queries: int = doc(200, "labelled pairs in all, an equal share per query round", positive)
    query_rounds: int = doc(10, "query updates", positive)
    query_interval: int | None = doc(
        None, "updates between query rounds (none: updates // (2 x rounds), at least 1: the rounds spread over the "
        "first half of training, or one per update from the first if there are more than half the updates)",
        optional(positive),
    )  # fmt: skip
    segment_length: int = doc(25, "steps per segment (at most num_steps)", positive)
    query_selection: str = doc("random", "random, or disagreement of the ensemble", one_of(*QUERY_SELECTIONS))
    candidates_per_query: int = doc(10, "disagreement: candidate pairs per pair asked", positive)
    heldout_pairs: int = doc(64, "fresh pairs per query round the model is measured on", positive)
    ensemble_size: int = doc(3, "reward models in the ensemble", positive)
    reward_hidden_sizes: tuple[int, ...] = doc((64, 64), "hidden layer widths of each reward model")
    reward_learning_rate: float = doc(1e-3, "the reward model's Adam learning rate", positive, sweepable=True)
    reward_steps: int = doc(100, "the reward model's Adam steps per query round", positive)
    reward_batch_size: int = doc(64, "labelled pairs per reward-model step, drawn with replacement", positive)
    teacher_rationality: float | None = doc(
        None, "the teacher's rationality beta: P(A) = sigmoid(beta (R_A - R_B)) (none: perfectly rational)",
        optional(positive),
    )  # fmt: skip
    teacher_myopia: float = doc(1.0, "the teacher's discount of earlier steps (1: none)", in_range(0.0, 1.0))
    label_noise: float = doc(0.0, "probability that a label is flipped", in_range(0.0, 1.0), sweepable=True)

    def validate(self) -> None:
        super().validate()
        check_hidden_sizes(self.reward_hidden_sizes, "reward_hidden_sizes")
        if self.query_selection == "disagreement" and self.ensemble_size < 2:
            raise ValueError(f"query_selection=disagreement needs ensemble_size >= 2, got {self.ensemble_size}")
        if self.normalize_observations or self.scale_rewards or self.reward_scale != 1.0:
            raise ValueError(
                "pbrl's reward model reads raw observations and its teacher raw rewards: normalize_observations and "
                "scale_rewards must be false and reward_scale 1 (the learned reward is scaled instead)"
            )
        if self.segment_length > self.num_steps:
            raise ValueError(f"segment_length={self.segment_length} exceeds num_steps={self.num_steps}: segments are "
                             "cut from one env's rollout of num_steps steps")  # fmt: skip
        if self.queries % self.query_rounds:
            raise ValueError(f"queries={self.queries} does not split evenly over query_rounds={self.query_rounds}")
        if (self.query_rounds - 1) * self.interval >= self.num_updates:
            raise ValueError(f"query_rounds={self.query_rounds} every {self.interval} updates do not fit in the "
                             f"{self.num_updates} updates of total_timesteps={self.total_timesteps}")  # fmt: skip

    @property
    def queries_per_round(self) -> int:
        return self.queries // self.query_rounds

    @property
    def interval(self) -> int:
        """Updates between query rounds: ``query_interval``, or ``max(1, num_updates // (2 * query_rounds))``,
        which spreads the rounds over the first half of training; more rounds than half the updates take one
        update each, from the first, so they reach into the second half (all of it when rounds == updates)."""
        if self.query_interval is not None:
            return self.query_interval
        return max(1, self.num_updates // (2 * self.query_rounds))


class Segments(NamedTuple):
    """Segments ``[N, L, ...]`` (or labelled pairs ``[Q, 2, L, ...]``) of one env's consecutive steps."""

    obs: jax.Array  # float32 [..., L, obs_dim], raw
    actions: jax.Array  # float32 [..., L, A]: one-hot (discrete) or clipped to the box
    rewards: jax.Array  # float32 [..., L], true
    mask: jax.Array  # bool [..., L]: the step belongs to the segment's first episode


class PbRLState(NamedTuple):
    """One seed's run: PPO's runner, the reward model and the labelled pairs so far."""

    runner: ppo.RunnerState
    reward_model: TrainState  # params with a leading ensemble axis
    pairs: Segments  # [queries, 2, L, ...], with the true rewards the teacher read (the model never reads them)
    labels: jax.Array  # float32 [queries]: 1 if the first segment is preferred, 0 the second, 0.5 a tie
    labelled: jax.Array  # bool [queries]: the pair holds a label
    queries: jax.Array  # int32: pairs labelled so far
    measured: dict[str, jax.Array]  # the last query round's held-out measures and reward-model statistics


MEASURES = ("heldout_accuracy", "return_correlation", "reward_model_loss", "reward_model_accuracy")


def reward_network(config: PbRLConfig, member_inputs: bool = False) -> StateActionEnsemble:
    return StateActionEnsemble(config.ensemble_size, config.reward_hidden_sizes, "relu", member_inputs=member_inputs)


def init(key: jax.Array, config: PbRLConfig) -> PbRLState:
    """PPO's ``init``, a fresh reward ensemble (``head`` stream) and no labelled pair."""
    runner = ppo.init(key, config)
    spec, length = config.spec, config.segment_length
    network = reward_network(config)
    params = network.init(runner.streams.head, jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim)))
    optimizer = clipped_adam(config.reward_learning_rate, None, 1e-8)
    reward_model = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
    pairs = Segments(
        jnp.zeros((config.queries, 2, length, spec.obs_dim)),
        jnp.zeros((config.queries, 2, length, spec.action_dim)),
        jnp.zeros((config.queries, 2, length)),
        jnp.zeros((config.queries, 2, length), bool),
    )
    nan = jnp.asarray(jnp.nan, jnp.float32)
    return PbRLState(runner, reward_model, pairs, jnp.zeros(config.queries), jnp.zeros(config.queries, bool),
                     jnp.asarray(0, jnp.int32), dict.fromkeys(MEASURES, nan))  # fmt: skip


def action_features(config: PbRLConfig, actions: jax.Array) -> jax.Array:
    """What the reward model reads of an action: one-hot ``[..., A]`` (discrete), or the action clipped to
    the box (what the env executed)."""
    spec = config.spec
    if spec.discrete:
        return jax.nn.one_hot(actions, spec.action_dim)
    return jnp.clip(actions, spec.action_low, spec.action_high)


def cut_segments(key: jax.Array, traj: ppo.Transition, config: PbRLConfig, count: int) -> Segments:
    """``count`` segments of ``segment_length`` steps from a rollout ``[T, B]``: start ``~ U{0..T-L}``, env
    ``~ U{0..B-1}``; a step is unmasked while no earlier step of the segment ended an episode."""
    num_steps, num_envs = traj.done.shape
    length = config.segment_length
    start_key, env_key = jax.random.split(key)
    starts = jax.random.randint(start_key, (count,), 0, num_steps - length + 1)
    envs = jax.random.randint(env_key, (count,), 0, num_envs)
    times = starts[:, None] + jnp.arange(length)  # [N, L]
    columns = envs[:, None]
    done = traj.done[times, columns]
    ended_before = jnp.cumsum(done, axis=1) - done  # episode ends strictly before each step
    return Segments(
        traj.obs[times, columns],
        action_features(config, traj.action[times, columns]),
        traj.reward[times, columns],
        ended_before == 0,
    )


def teacher_returns(config: PbRLConfig, segments: Segments, myopia: float | None = None) -> jax.Array:
    """``sum_t gamma^(L-1-t) r_t`` over each segment's unmasked steps (``[...]``), gamma = ``myopia``
    (default the config's ``teacher_myopia``)."""
    gamma = config.teacher_myopia if myopia is None else myopia
    length = segments.rewards.shape[-1]
    weights = gamma ** jnp.arange(length - 1, -1, -1, dtype=jnp.float32)
    return jnp.sum(segments.rewards * segments.mask * weights, axis=-1)


def teacher_labels(config: PbRLConfig, first: Segments, second: Segments, key: jax.Array) -> jax.Array:
    """The simulated teacher's labels ``[N]``: 1 prefers ``first``, 0 ``second``, 0.5 a tie of a perfectly
    rational teacher; each flipped to ``1 - label`` with probability ``label_noise``."""
    choice_key, flip_key = jax.random.split(key)
    difference = teacher_returns(config, first) - teacher_returns(config, second)
    if config.teacher_rationality is None:
        labels = jnp.where(difference > 0, 1.0, jnp.where(difference < 0, 0.0, 0.5))
    else:
        p_first = jax.nn.sigmoid(config.teacher_rationality * difference)
        labels = jax.random.bernoulli(choice_key, p_first).astype(jnp.float32)
    flipped = jax.random.uniform(flip_key, labels.shape) < config.label_noise
    return jnp.where(flipped, 1.0 - labels, labels)


def predicted_returns(params: Any, config: PbRLConfig, segments: Segments, member_inputs: bool = False) -> jax.Array:
    """Every member's predicted return of each segment: ``[K, ...]``, the sum of its rewards over the
    unmasked steps. With ``member_inputs`` the segments are ``[K, ...]`` and member k reads only slice k."""
    rewards = reward_network(config, member_inputs).apply(params, segments.obs, segments.actions)  # [K, ..., L]
    return jnp.sum(rewards * segments.mask, axis=-1)


def preference_loss(returns_first: jax.Array, returns_second: jax.Array, labels: jax.Array) -> jax.Array:
    """Bradley-Terry with a label y per pair: ``y * BT(R_1, R_2) + (1 - y) * BT(R_2, R_1)`` (``[...]``)."""
    first_preferred, _ = bradley_terry_loss(returns_first, returns_second)
    second_preferred, _ = bradley_terry_loss(returns_second, returns_first)
    return labels * first_preferred + (1.0 - labels) * second_preferred


def pair_up(segments: Segments) -> tuple[Segments, Segments]:
    """Consecutive segments as pairs: ``[2N, ...] -> ([N, ...], [N, ...])``."""
    return jax.tree.map(lambda x: x[0::2], segments), jax.tree.map(lambda x: x[1::2], segments)


def select(config: PbRLConfig, params: Any, candidates: Segments) -> Segments:
    """``queries_per_round`` of the candidate pairs ``[2C, ...]``: the first ones (random: the candidates are
    already random), or those on which the members' ``sigmoid(R_1 - R_2)`` has the largest std."""
    asked = config.queries_per_round
    if config.query_selection == "random":
        return jax.tree.map(lambda x: x[: 2 * asked], candidates)
    first, second = pair_up(candidates)
    p_first = jax.nn.sigmoid(predicted_returns(params, config, first) - predicted_returns(params, config, second))
    _, chosen = jax.lax.top_k(jnp.std(p_first, axis=0), asked)
    rows = jnp.stack([2 * chosen, 2 * chosen + 1], axis=1).reshape(-1)
    return jax.tree.map(lambda x: x[rows], candidates)


def heldout_measures(config: PbRLConfig, params: Any, heldout: Segments) -> dict[str, jax.Array]:
    """The ensemble's accuracy on fresh pairs against the perfectly rational, non-myopic teacher (ties left
    out) and the correlation of its predicted segment returns (member mean) with the true ones."""
    predicted = predicted_returns(params, config, heldout).mean(axis=0)  # [2P], pairs consecutive
    true = teacher_returns(config, heldout, 1.0)
    decided = true[0::2] != true[1::2]
    right = (predicted[0::2] > predicted[1::2]) == (true[0::2] > true[1::2])
    accuracy = jnp.sum(right * decided) / jnp.maximum(decided.sum(), 1)
    x, y = predicted - predicted.mean(), true - true.mean()
    spread = range_has_spread(x) & range_has_spread(y)
    correlation = jnp.where(spread, jnp.sum(x * y) / jnp.sqrt(jnp.sum(x * x) * jnp.sum(y * y) + 1e-30), jnp.nan)
    return {"heldout_accuracy": jnp.where(decided.any(), accuracy, jnp.nan), "return_correlation": correlation}


def fit_reward_model(state: PbRLState, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """``reward_steps`` Adam steps; each member draws its own ``reward_batch_size`` labelled pairs per step."""
    config = state.runner.config
    members, batch = config.ensemble_size, config.reward_batch_size

    def loss_fn(params: Any, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
        pairs = jax.tree.map(lambda x: x[rows], state.pairs)  # [K, batch, 2, L, ...]
        own = predicted_returns(params, config, pairs, member_inputs=True)  # [K, batch, 2]: member k on its rows
        labels = state.labels[rows]  # [K, batch]
        losses = preference_loss(own[..., 0], own[..., 1], labels)
        right = jnp.where(labels == 0.5, jnp.nan, ((own[..., 0] > own[..., 1]) == (labels > 0.5)).astype(jnp.float32))
        return losses.mean() * members, jnp.nanmean(right)  # each member's mean loss, summed: its own gradient

    def step(model: TrainState, step_key_: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        rows = jax.random.choice(step_key_, config.queries, (members, batch), p=state.labelled.astype(jnp.float32))
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(model.params, rows)
        return model.apply_gradients(grads=grads), {"loss": loss / members, "accuracy": accuracy}

    model, stats = jax.lax.scan(step, state.reward_model, jax.random.split(key, config.reward_steps))
    return model, {"reward_model_loss": stats["loss"][-1], "reward_model_accuracy": stats["accuracy"][-1]}


def query_round(state: PbRLState, traj: ppo.Transition, index: jax.Array) -> PbRLState:
    """Cut, select and label this round's pairs, measure the model on fresh ones, add the pairs, refit."""
    config = state.runner.config
    asked = config.queries_per_round
    pool = asked * (config.candidates_per_query if config.query_selection == "disagreement" else 1)
    cut_key, heldout_key, label_key, fit_key = jax.random.split(step_key(state.runner.streams.pairs, index), 4)
    chosen = select(config, state.reward_model.params, cut_segments(cut_key, traj, config, 2 * pool))
    heldout = cut_segments(heldout_key, traj, config, 2 * config.heldout_pairs)
    measured = heldout_measures(config, state.reward_model.params, heldout)
    labels = teacher_labels(config, *pair_up(chosen), label_key)
    offset = (index // config.interval) * asked
    pairs = jax.tree.map(lambda x: x.reshape(asked, 2, *x.shape[1:]), chosen)
    state = state._replace(
        pairs=jax.tree.map(
            lambda old, new: jax.lax.dynamic_update_slice_in_dim(old, new, offset, 0), state.pairs, pairs
        ),  # fmt: skip
        labels=jax.lax.dynamic_update_slice_in_dim(state.labels, labels, offset, 0),
        labelled=jax.lax.dynamic_update_slice_in_dim(state.labelled, jnp.ones(asked, bool), offset, 0),
        queries=state.queries + asked,
    )
    reward_model, fitted = fit_reward_model(state, fit_key)
    return state._replace(reward_model=reward_model, measured=measured | fitted)


def learned_rewards(config: PbRLConfig, params: Any, traj: ppo.Transition) -> jax.Array:
    """The ensemble's mean reward at each step of the rollout ``[T, B]``, divided by its root mean square over
    the rollout: unit scale, sign kept (not centred), and no blow-up when the rewards barely vary."""
    rewards = reward_network(config).apply(params, traj.obs, action_features(config, traj.action)).mean(axis=0)
    return rewards / (jnp.sqrt(jnp.mean(jnp.square(rewards))) + 1e-8)


def update(state: PbRLState, index: jax.Array) -> tuple[PbRLState, dict[str, jax.Array]]:
    """One update: PPO's rollout, a query round on query updates, PPO's learning step on the learned reward."""
    config = state.runner.config
    network = make_network(config)
    runner, traj = ppo.rollout(state.runner, network, step_key(state.runner.streams.rollout, index))
    state = state._replace(runner=runner)
    is_query_update = (index % config.interval == 0) & (index < config.query_rounds * config.interval)
    state = jax.lax.cond(is_query_update, query_round, lambda s, *_: s, state, traj, index)
    rewards = learned_rewards(config, state.reward_model.params, traj)
    runner, metrics = ppo.learn(state.runner, network, traj._replace(reward=rewards), index)
    metrics |= state.measured | {"queries": state.queries}
    return state._replace(runner=runner), metrics


def make_train(config: PbRLConfig):
    """``train(key, config=config) -> (PbRLState, metrics)``: ``init`` then a ``lax.scan`` of ``update``."""

    def train(key: jax.Array, config: PbRLConfig = config) -> tuple[PbRLState, dict[str, jax.Array]]:
        return jax.lax.scan(update, init(key, config), jnp.arange(config.num_updates))

    return train


def policy(state: PbRLState, obs: jax.Array) -> Any:
    """PPO's policy of the run (``purerl.control.ppo.policy``)."""
    return ppo.policy(state.runner, obs)


def evaluate(state: PbRLState, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """PPO's evaluation on the env's true reward (``purerl.control.ppo.evaluate``)."""
    return ppo.evaluate(state.runner, key)
