import dataclasses
import json
import os
import shutil
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.corpus import RandomBlocks
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.objectives import Objective, lm_loss
from nlp_jax.train.checkpoint import Checkpointer
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import BadBatch, Trainer, TrainingDiverged, load_averaged, load_trained, train
from nlp_jax.train.optim import learning_rate_schedule

CFG = GPT2Config.tiny(dropout=0.1)  # dropout on: resume must also reproduce the RNG stream
DATA = np.random.default_rng(0).integers(0, 37, 3000).astype(np.int32)
OPTIM = OptimConfig(lr=3e-3, warmup_steps=2)


def run(workdir, steps=6, source=None, loss_fn=lm_loss, **kw):
    train_cfg = TrainConfig(steps=steps, log_every=1, eval_every=0, ckpt_every=kw.pop("ckpt_every", 0),
                            progress=False, seed=7, **kw)
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    return train(model, loss_fn, source or RandomBlocks(DATA, 4, 16, seed=1), train_cfg=train_cfg,
                 optim_cfg=OPTIM, workdir=workdir)


def test_resume_after_sigterm_is_bitwise_identical(tmp_path):
    _, straight = run(tmp_path / "a")
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def interrupting(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # batch 2 is prepared while step 1 runs: it stops after step 1
        return base(step)

    model, first = run(tmp_path / "b", source=interrupting)
    assert first.status == "interrupted" and first.step == 2
    resumed_model, second = run(tmp_path / "b")
    assert second.status == "finished" and min(second.losses) == 2
    assert {**first.losses, **second.losses} == straight.losses  # exact float equality, every step
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def poisoned(step):  # finite data whose loss is NaN (the square root of -1): an optimisation fault
        return {**base(step), "poison": np.float32(-1.0 if step == 4 else 0.0)}

    def loss_fn(model, batch, key):
        loss, aux = lm_loss(model, batch, key)
        return loss + jnp.sqrt(batch["poison"]), aux

    with pytest.raises(TrainingDiverged, match="at step 5 .*checkpoint \\(step 4\\).*optimisation fault") as err:
        run(tmp_path, source=poisoned, loss_fn=loss_fn, ckpt_every=2)
    assert err.value.step == 5  # batch 4 is the 5th step: metrics.jsonl's numbering
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.latest_step() == 4  # saved after steps 0..3; nothing written after the NaN
    state, meta, _ = ckpt.restore(Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), Objective.of(lm_loss), OPTIM, 6).state)
    assert meta["data_position"] == 4
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def test_a_loss_far_above_its_start_stops_the_run_and_nan_data_is_named_a_data_fault(tmp_path):
    """DPO at lr 1e3 reached a finite loss of 4e4 and its result was recorded (issue 40, cause 5)."""
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def scaled(model, batch, key):
        loss, aux = lm_loss(model, batch, key)
        return loss * batch["scale"], aux

    def rising(step):  # ~3.6 at the start; 50 times that at step 4 (the 5th): finite, but diverged
        return {**base(step), "scale": np.float32(50.0 if step == 4 else 1.0)}

    with pytest.raises(TrainingDiverged, match="far above its start .* at step 5 .*optimisation fault"):
        run(tmp_path / "a", source=rising, loss_fn=scaled, ckpt_every=2)
    _, tolerated = run(tmp_path / "b", source=rising, loss_fn=scaled, max_loss_rise=0.0)  # 0: NaN only
    assert tolerated.status == "finished"

    def nan_data(step):  # e.g. a judge that returned NaN: refused before the step, named a data fault
        return {**base(step), "scale": np.float32(np.nan if step == 3 else 1.0)}

    with pytest.raises(BadBatch, match="batch of step 4 holds 1 of 1 non-finite values in 'scale': a data fault"):
        run(tmp_path / "c", source=nan_data, loss_fn=scaled, ckpt_every=2)
    assert Checkpointer(tmp_path / "c" / "checkpoints").latest_step() == 2


def test_a_step_larger_than_the_machine_is_refused_before_it_runs(tmp_path):
    """model.block_size=200000 ran its first step for 11 minutes, deaf to signals (issue 40, cause 5)."""
    big = GPT2Config(vocab_size=37, block_size=200_000, n_layer=4, n_head=4, n_embd=128)
    data = np.random.default_rng(0).integers(0, 37, 400_100).astype(np.int32)
    cfg = TrainConfig(steps=2, eval_every=0, ckpt_every=0, progress=False)
    with pytest.raises(MemoryError, match="the training step needs [0-9,.]+ GiB .* lower the batch size or the seq"):
        train(GPT2(big, rngs=nnx.Rngs(0)), lm_loss, RandomBlocks(data, 12, 200_000), train_cfg=cfg, optim_cfg=OPTIM,
              workdir=tmp_path)
    assert not (tmp_path / "checkpoints" / "last").exists() or not any((tmp_path / "checkpoints" / "last").iterdir())


def test_train_step_compiles_once_and_keeps_last_n(tmp_path):
    counted = chex.assert_max_traces(lm_loss, n=1)
    _, result = run(tmp_path, steps=5, loss_fn=counted, ckpt_every=1, keep_last=2)
    assert len(result.losses) == 5
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints" / "last").iterdir() if p.name.isdigit())
    assert steps == [4, 5]


def test_averaging_the_last_checkpoints_is_the_mean_of_their_parameters(tmp_path):
    run(tmp_path, steps=5, ckpt_every=1, keep_last=3)
    singles = []
    ckpt = Checkpointer(tmp_path / "checkpoints")
    for step in (3, 4, 5):
        trainer = Trainer(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, 1)
        assert trainer.restore(ckpt, step=step)["step"] == step
        singles.append(nnx.state(trainer.model, nnx.Param))
    ckpt.close()
    averaged, meta = load_averaged(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, tmp_path, last=3)
    assert meta["steps"] == [3, 4, 5]
    expected = jax.tree.map(lambda *xs: sum(np.asarray(x, np.float64) for x in xs) / 3, *singles)
    chex.assert_trees_all_close(nnx.state(averaged, nnx.Param), expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(singles[0]["wte"]["embedding"][...], singles[2]["wte"]["embedding"][...])  # they differ
    with pytest.raises(ValueError, match="train.keep_last >= 4"):
        load_averaged(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, tmp_path, last=4)
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 1 .* holds \\[3, 4, 5\\]"):
        Trainer(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, 1).restore(Checkpointer(tmp_path / "checkpoints"), step=1)


def test_best_checkpoint_and_eval_records(tmp_path):
    vals = iter([3.0, 1.0, 2.0])
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=6, eval_every=2, log_every=2, ckpt_every=0, progress=False)
    weights = {}

    def evaluate(m):
        weights[len(weights) * 2 + 2] = np.asarray(m.wte.embedding[...])
        return {"val_loss": next(vals)}

    final, result = train(model, lm_loss, RandomBlocks(DATA, 4, 16), train_cfg=cfg, optim_cfg=OPTIM,
                          workdir=tmp_path, eval_fn=evaluate)
    assert [e["step"] for e in result.evals] == [2, 4, 6] and result.best == 1.0
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.best.latest_step() == 4
    ckpt.close()
    assert (tmp_path / "loss.png").stat().st_size > 0
    best, meta = load_trained(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, tmp_path)  # the step-4 weights
    assert meta["step"] == 4 and meta["best"] == 1.0
    np.testing.assert_array_equal(best.wte.embedding[...], weights[4])
    last, meta = load_trained(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, tmp_path, best=False)
    assert meta["step"] == 6
    np.testing.assert_array_equal(last.wte.embedding[...], final.wte.embedding[...])
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_trained(GPT2(CFG, rngs=nnx.Rngs(1)), lm_loss, OPTIM, tmp_path / "elsewhere")


def test_an_evaluation_may_return_text_beside_numbers(tmp_path, capsys):
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=2, eval_every=1, log_every=1, ckpt_every=0, progress=True)
    _, result = train(model, lm_loss, RandomBlocks(DATA, 4, 16), train_cfg=cfg, optim_cfg=OPTIM, workdir=tmp_path,
                      eval_fn=lambda m: {"val_loss": 1.5, "signature": "case:mixed|tok:13a"})
    assert result.status == "finished" and result.evals[-1]["signature"] == "case:mixed|tok:13a"
    assert "val_loss 1.5000, signature case:mixed|tok:13a" in "".join(capsys.readouterr())


def test_trained_model_is_returned_updated(tmp_path):
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    cfg = TrainConfig(steps=3, eval_every=0, ckpt_every=0, progress=False)
    trained, _ = train(model, lm_loss, RandomBlocks(DATA, 4, 16), train_cfg=cfg, optim_cfg=OPTIM, workdir=tmp_path)
    after = nnx.state(trained, nnx.Param)
    assert not np.allclose(before["wte"]["embedding"][...], after["wte"]["embedding"][...])


def test_schedule_warmup_cosine_matches_nanogpt():
    def nanogpt_lr(it, lr=1e-3, min_lr=1e-4, warmup=100, decay=2000):  # nanoGPT's get_lr
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay:
            return min_lr
        return min_lr + 0.5 * (1.0 + np.cos(np.pi * (it - warmup) / (decay - warmup))) * (lr - min_lr)

    sched = learning_rate_schedule(OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=100), 2000)
    steps = [0, 1, 50, 99, 100, 101, 1050, 1999, 2000, 2500]
    np.testing.assert_allclose([float(sched(k)) for k in steps], [nanogpt_lr(k) for k in steps], rtol=1e-5)
    const = learning_rate_schedule(dataclasses.replace(OptimConfig(), schedule="constant", warmup_steps=9), 100)
    np.testing.assert_allclose([float(const(4)), float(const(50))], [5e-4, 1e-3], rtol=1e-6)


def test_epoch_decay_schedule_is_zarembas():
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="epoch_decay", steps_per_epoch=10, decay_start_epoch=4,
                      decay_rate=0.5)
    sched = learning_rate_schedule(cfg, 130)
    for epoch in range(13):
        expected = 1.0 * 0.5 ** max(epoch + 1 - 4, 0)
        for step in (epoch * 10, epoch * 10 + 9):
            np.testing.assert_allclose(float(sched(step)), expected, rtol=1e-6, err_msg=f"epoch {epoch}")


def test_a_crash_after_an_evaluation_never_collides_on_rerun(tmp_path):
    """kill -9 between an evaluation (which wrote best/) and the next checkpoint: the rerun resumes."""
    base = RandomBlocks(DATA, 4, 16, seed=1)
    vals = iter([3.0, 2.0, 1.0, 0.5])

    def crashing(step):
        if step == 3:
            raise SystemError("simulated crash: nothing is saved")  # no handler runs, as with kill -9
        return base(step)

    def run_eval(source):
        cfg = TrainConfig(steps=6, log_every=1, eval_every=2, ckpt_every=0, progress=False, seed=7)
        return train(GPT2(CFG, rngs=nnx.Rngs(0)), lm_loss, source, train_cfg=cfg, optim_cfg=OPTIM,
                     workdir=tmp_path, eval_fn=lambda m: {"val_loss": next(vals)})

    with pytest.raises(SystemError):
        run_eval(crashing)
    _, straight = run(tmp_path / "straight")
    _, resumed = run_eval(base)  # the evaluation at step 2 saved last/2 before it wrote best/2
    assert resumed.status == "finished" and min(resumed.losses) == 2
    assert {k: v for k, v in straight.losses.items() if k >= 2} == resumed.losses


def _evaluated_run(workdir, values, steps, source=None):
    """A run evaluated every 10 steps (checkpointed only at evaluations), ``values`` the evaluations in turn."""
    cfg = TrainConfig(steps=steps, log_every=10, eval_every=10, ckpt_every=0, progress=False, seed=7)
    return train(GPT2(CFG, rngs=nnx.Rngs(0)), lm_loss, source or RandomBlocks(DATA, 4, 16, seed=1), train_cfg=cfg,
                 optim_cfg=OPTIM, workdir=workdir, eval_fn=lambda m: {"val_loss": values.pop(0)})


def test_the_best_checkpoint_survives_a_crash_right_after_an_evaluation(tmp_path):
    """last/10 is saved before step 10's evaluation (best 1.0) and holds the best before it: a kill before
    the next checkpoint, then a resume, must keep 1.0 as the best, not take step 20's worse 2.0."""
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def crashing(step):
        if step == 15:
            raise SystemError("simulated kill -9: nothing is saved")
        return base(step)

    with pytest.raises(SystemError):
        _evaluated_run(tmp_path, [1.0], 30, crashing)
    _, resumed = _evaluated_run(tmp_path, [2.0, 1.5], 30)
    assert resumed.best == 1.0
    meta = Checkpointer(tmp_path / "checkpoints").best_meta()
    assert (meta["step"], meta["best"]) == (10, 1.0)
    assert json.loads((tmp_path / "checkpoints" / "evaluations.json").read_text())["best"] == {"step": 10,
                                                                                             "val_loss": 1.0}


def test_extending_a_finished_run_keeps_its_best_and_a_rerun_reports_its_last_evaluation(tmp_path):
    _, first = _evaluated_run(tmp_path, [1.0, 0.7, 0.5], 30)  # the best is step 30's, evaluated after last/30
    _, again = _evaluated_run(tmp_path, [], 30)  # finished: nothing runs; its results are still reported
    assert again.best == 0.5 and again.evals == [{"step": 30, "val_loss": 0.5}]
    _, longer = _evaluated_run(tmp_path, [0.8], 40)
    assert longer.best == 0.5 and [e["step"] for e in longer.evals] == [30, 40]
    meta = Checkpointer(tmp_path / "checkpoints").best_meta()
    assert (meta["step"], meta["best"]) == (30, 0.5)


def test_a_finished_run_asked_for_with_another_learning_rate_is_trained_again(tmp_path, capsys):
    """Re-labelling the finished weights with the new rate would report another run's result as this one's."""
    cfg = TrainConfig(steps=3, log_every=1, eval_every=0, ckpt_every=3, progress=False, seed=7)

    def at(lr, workdir):
        return train(GPT2(CFG, rngs=nnx.Rngs(0)), lm_loss, RandomBlocks(DATA, 4, 16, seed=1), train_cfg=cfg,
                     optim_cfg=dataclasses.replace(OPTIM, lr=lr), workdir=workdir,
                     config={"optim": {"lr": lr}, "train": {"steps": 3}})[1]

    fresh = at(1e-2, tmp_path / "fresh")
    at(3e-3, tmp_path / "b")  # finished at lr 3e-3 ...
    relabelled = at(1e-2, tmp_path / "b")  # ... then asked for at 1e-2: trained again, not read back
    assert relabelled.losses == fresh.losses and len(relabelled.losses) == 3
    assert "learning settings changed (optim.lr: 0.003 -> 0.01)" in capsys.readouterr().out
    assert (tmp_path / "b" / "previous-1" / "checkpoints").is_dir()  # the lr-3e-3 run kept aside


def test_a_partial_last_metrics_line_is_dropped_on_resume(tmp_path, capsys):
    model, first = run(tmp_path, steps=3, ckpt_every=3)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 3.1')  # a crash mid-write
    _, second = run(tmp_path, steps=5)
    assert second.status == "finished"
    assert "line 4 is not a complete metrics record" in capsys.readouterr().err
    logged = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5]


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from nlp_jax.train.records import run_lock\n"
        f"with run_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=f"in use by another run \\(pid {holder.pid}\\)"):
            run(tmp_path, steps=2)
    finally:
        holder.kill()
        holder.wait()
    assert run(tmp_path, steps=2)[1].status == "finished"  # a dead holder leaves no stale lock


def test_non_finite_metrics_are_written_as_strict_json(tmp_path):
    cfg = TrainConfig(steps=2, eval_every=2, log_every=1, ckpt_every=0, progress=False)
    train(GPT2(CFG, rngs=nnx.Rngs(0)), lm_loss, RandomBlocks(DATA, 4, 16), train_cfg=cfg, optim_cfg=OPTIM,
          workdir=tmp_path, eval_fn=lambda m: {"val_loss": float("inf"), "other": float("nan")})

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))

    records = [strict(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1] == {"step": 2, "val_loss": None, "other": None}


def _chunks(step_dir):
    return sorted((p for p in step_dir.rglob("*") if p.is_file() and "/d/" in str(p)), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty_step", "no_metadata"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, damage, capsys):
    run(tmp_path, steps=4, ckpt_every=2)
    latest = tmp_path / "checkpoints" / "last" / "4"
    if damage == "truncate":
        chunk = _chunks(latest / "state")[-1]  # the largest array chunk
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    elif damage == "flip":  # every data file: which one holds the live copy of an array is orbax's choice
        for chunk in _chunks(latest / "state"):
            data = bytearray(chunk.read_bytes())
            data[len(data) // 2] ^= 0xFF
            chunk.write_bytes(bytes(data))
    elif damage == "empty_step":
        shutil.rmtree(latest)
        latest.mkdir()
    else:
        shutil.rmtree(latest / "meta")
    ckpt = Checkpointer(tmp_path / "checkpoints")
    template = Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), Objective.of(lm_loss), OPTIM, 6).state
    _, meta, _ = ckpt.restore(template)
    ckpt.close()
    assert meta["step"] == 2
    assert f"checkpoint {latest} is damaged" in capsys.readouterr().err
    _, resumed = run(tmp_path, steps=6)  # the rerun trains past step 4 again and replaces the damaged copy
    assert resumed.status == "finished" and min(resumed.losses) == 2


def test_a_nan_from_bad_token_ids_says_so_not_lower_the_learning_rate(tmp_path):
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def bad_ids(step):
        batch = base(step)
        return batch if step != 2 else {**batch, "inputs": batch["inputs"] + 37}  # 64 ids >= V = 37

    with pytest.raises(TrainingDiverged, match="64 token ids outside the model's vocabulary") as err:
        run(tmp_path, source=bad_ids)
    assert "optim.lr" not in str(err.value)


def test_a_full_disk_is_one_clear_message(tmp_path, monkeypatch, capsys):
    """On a real full disk (a 200 kB tmpfs) orbax's writers logged 531 lines to stderr around the one message:
    'Task exception was never retrieved', tracebacks printed by their threads. They are held during a save
    and dropped when the disk is full; any other failure keeps them."""
    import errno
    import logging
    import sys

    import orbax.checkpoint as ocp

    def failing(cause):
        def save(self, *args, **kwargs):
            for _ in range(50):
                logging.getLogger("asyncio").error("Task exception was never retrieved")
            logging.getLogger("absl").error("_SignalingThread.run() raised an exception")
            print("Traceback (most recent call last): RuntimeError: Event loop is closed", file=sys.stderr)
            try:
                raise cause
            except OSError as inner:
                raise RuntimeError("asyncio task failed (a wrapper, as tensorstore's are)") from inner
        return save

    monkeypatch.setattr(ocp.CheckpointManager, "save", failing(OSError(errno.ENOSPC, "No space left on device")))
    capsys.readouterr()
    with pytest.raises(OSError, match="no space left on device while saving checkpoint step 2") as err:
        run(tmp_path / "full", steps=2)
    assert err.value.errno == errno.ENOSPC and err.value.__cause__ is None
    noise = capsys.readouterr().err
    assert "never retrieved" not in noise and "Event loop" not in noise and "SignalingThread" not in noise
    monkeypatch.setattr(ocp.CheckpointManager, "save", failing(OSError(errno.EACCES, "Permission denied")))
    with pytest.raises(RuntimeError, match="a wrapper"):
        run(tmp_path / "denied", steps=2)
    assert "Event loop is closed" in capsys.readouterr().err  # another failure: nothing is hidden
