"""Metrics of a trained model, as pure torch code: no Ray, no MLflow, no config loading, no files.

:mod:`raysys.eval.evaluators`: the ``Evaluator`` base (summable totals per worker), its registry
and ``accuracy``; families register theirs (``raysys/families/<paper>/evaluators.py``), whose pure
functions live beside them, e.g. ``raysys.families.antialiased.consistency.shift_agreement``.
:mod:`raysys.eval.overrides`: which config keys ``raysys eval <trained run>`` may change.
Finding a trained run, loading its checkpoint and launching an evaluation are the driver's
(:mod:`raysys.driver.checkpoints`, :mod:`raysys.driver.evaluation`).
"""
