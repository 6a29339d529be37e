"""Tuned configs that ship with purerl: ``<algorithm>/<env>.json``, each with its source and tuning note in
``_source``. ``purerl train ALGORITHM --env ENV`` starts from ENV's file when there is one
(``purerl.io.tuned``); the experiments under ``experiments/`` report what they reach."""
