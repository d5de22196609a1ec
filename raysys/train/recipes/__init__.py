"""Per-family training recipes, registered by name (``train.recipe``).

A recipe (:class:`Recipe`) is the loop's one family-specific object: the loop
(raysys/train/loop.py) asks it for settings and calls its hooks at named loop
moments, like Lightning's ``Callback``.

**Moments**, in the order the loop calls them on every worker::

    on_phase_start(model, phase, resolution)        a phase begins (once per phase; again on resume)
    on_fit_start(loop)                              a fresh run (no checkpoint of its own) before its first epoch
    per epoch:
      on_train_epoch_start(model, epoch)
      per batch: on_train_batch_start(images, labels, generator) -> (inputs, targets)
                 loss(model, outputs, targets) -> (loss, extra terms)
                 on_before_optimizer_step(grad_norm) -> False skips the step
      evaluation: eval_modes(model), set_eval_mode(model, mode) per pass
      on_train_epoch_end(model, epoch) -> statistics logged with the epoch
      named_metrics(metrics) -> the epoch's metrics as logged
      on_validation_end(model, metrics)             default: early stopping records the epoch
      checkpoint (the recipe's state_dict in it); should_stop ends the epochs
    on_train_end(model)                             default: the best epoch's weights loaded back
    on_fit_end(loop, history) -> final metrics      e.g. STIR's final test

Settings asked once: ``param_groups``, ``optimizer_weight_decay``,
``batch_size_factor``, ``passes_per_epoch``, ``phases``, ``select_data``.

**State.** ``state_dict()``/``load_state_dict()`` hold what hooks keep from one
epoch to the next: early stopping (best value and epoch, stale count, best
weights) in every recipe, MIMOConv's gradient-skip rule (reference norm and the
running epoch's sums). It is saved under ``"recipe"`` in every checkpoint and
loaded before the first resumed epoch, so a resumed run continues exactly where
the checkpoint left it. It must be tensors and plain values: checkpoints load
with ``torch.load(weights_only=True)``. Values a hook derives again on resume
(FlexConv's phase resolution, from ``on_phase_start``) or re-seeds each epoch
(MIMOConv's superposition draws) are not state.

**Output.** Hooks return metrics; ``on_fit_end`` may also call the loop's
``log_params``, ``set_tags`` and ``log_artifact`` (file bytes at an artifact
path), which rank 0 sends through the driver feed (raysys/train/feed.py): a
worker never opens MLflow.
"""
from raysys.train.recipes.base import RECIPES, Recipe, build_recipe

__all__ = ["RECIPES", "Recipe", "build_recipe"]
