"""Toy text tasks with verifiable rewards, by name: ``make_task("addition")``."""

from purerl.lm.tasks.arithmetic import Addition
from purerl.lm.tasks.base import Task
from purerl.lm.tasks.sentiment import Sentiment
from purerl.lm.tasks.strings import Palindrome, Reverse

TASKS: dict[str, type[Task]] = {task.name: task for task in (Sentiment, Addition, Reverse, Palindrome)}


def make_task(name: str, demo_quality: float | None = None) -> Task:
    """The task ``name``. ``demo_quality`` sets the fraction of good demonstrations (right answers; for
    ``sentiment``, positive adjectives); ``None`` keeps the task's default."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if demo_quality is None:
        return TASKS[name]()
    option = "positive_fraction" if name == "sentiment" else "correct_fraction"
    return TASKS[name](**{option: demo_quality})


__all__ = ["TASKS", "Task", "make_task"]
