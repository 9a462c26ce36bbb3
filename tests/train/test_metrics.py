"""The loss plot: drawn from metrics.jsonl, on a log scale only where every loss is positive."""

import json
import warnings

import pytest

from nlp_jax.train.metrics import plot_losses


@pytest.mark.parametrize("losses", [[2.0, 1.0, 0.5], [-0.1, -0.3, -0.2]], ids=["positive", "policy_gradient"])
def test_the_loss_plot_draws_any_losses_without_a_warning(tmp_path, losses):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": i + 1, "loss": v, "lr": 1e-3}) + "\n" for i, v in enumerate(losses)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a log scale over non-positive values warns (and draws nothing useful)
        out = plot_losses(path, tmp_path / "loss.png")
    assert out.stat().st_size > 0
