"""Two processes on 127.0.0.1, 4 CPU devices each, joined by jax.distributed: the loop on the global
2 x 4 mesh trains as one device does; only process 0 logs; each process writes its own checkpoint part."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from tiny_gpt_run import GPT, OPTIM, SOURCE

from nlp_jax.models.gpt2 import GPT2
from nlp_jax.objectives import lm_loss
from nlp_jax.train.config import TrainConfig
from nlp_jax.train.distributed import settings
from nlp_jax.train.loop import train

WORKER = Path(__file__).with_name("multihost_worker.py")
TIMEOUT_S = 600  # about 60 s alone on 2 cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pair(root: Path) -> tuple[Path, list[dict], list[str]]:
    """Start the two worker processes; (their run directory, their JSON results, their stderr)."""
    workdir, port = root / "run", free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # output to files, not pipes: a pipe read only after the other process finishes can fill (the runtime
    # logs more while waiting under load), block its writer mid-collective and so hang both processes
    logs = [(root / f"out{i}.txt", root / f"err{i}.txt") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with open(out, "w") as o, open(err, "w") as e:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(port), str(i), str(workdir)], env=env,
                                          stdout=o, stderr=e))
    try:
        for p in procs:
            p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for p in procs:  # each prints every thread's Python stack (faulthandler), then is killed
            p.send_signal(signal.SIGUSR1)
        time.sleep(5)
        for p in procs:
            p.kill()
        pytest.fail(f"the two processes did not finish in {TIMEOUT_S} s; their stderr (compiler warnings left out) "
                    "ends:\n"
                    + "\n".join(f"--- process {i}:\n" + readable(err.read_text())[-5000:]
                                 for i, (_, err) in enumerate(logs)))
    outs = [(out.read_text(), err.read_text()) for out, err in logs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return workdir, [json.loads(out.strip().splitlines()[-1]) for out, _ in outs], [err for _, err in outs]


def readable(stderr: str) -> str:
    """``stderr`` without the SPMD partitioner's warnings, which fill it on CPU."""
    return "\n".join(line for line in stderr.splitlines() if "spmd_partitioner" not in line)


def one_device_run(workdir):
    cfg = TrainConfig(steps=4, log_every=1, eval_every=2, ckpt_every=2, progress=False)
    _, result = train(GPT2(GPT, rngs=nnx.Rngs(0)), lm_loss, SOURCE, train_cfg=cfg, optim_cfg=OPTIM, workdir=workdir,
                      eval_fn=lambda model: {"val_loss": float(lm_loss(model, SOURCE(99), None)[0])})
    return [result.losses[s] for s in sorted(result.losses)], result.evals[-1]["val_loss"]


@pytest.mark.slow
def test_two_processes_train_as_one_device_and_process_0_alone_logs(tmp_path):
    # one test, not two sharing a fixture: under pytest-xdist each worker would start its own pair
    workdir, results, stderr = run_pair(tmp_path)
    losses, val_loss = one_device_run(tmp_path / "one")
    for r in results:
        assert r["devices"] == 8 and r["local"] == 4
        np.testing.assert_allclose(r["losses"], losses, atol=1e-5)
        assert abs(r["val_loss"] - val_loss) < 1e-5
    assert [r["process"] for r in results] == [0, 1]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # once, not once a process
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4]
    assert "train:" in stderr[0] and "train:" not in stderr[1]  # the progress bar
    state = workdir / "checkpoints" / "last" / "4" / "state"
    assert {p.name for p in state.iterdir()} >= {"ocdbt.process_0", "ocdbt.process_1"}


def test_settings_from_flags_and_environment(monkeypatch):
    for var in ("NLP_JAX_COORDINATOR", "NLP_JAX_NUM_PROCESSES", "NLP_JAX_PROCESS_ID", "NLP_JAX_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)
    assert settings() is None and settings(detect=True) == {}
    monkeypatch.setenv("NLP_JAX_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("NLP_JAX_NUM_PROCESSES", "4")
    assert settings(process_id=3) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    with pytest.raises(ValueError, match=r"missing: --process-id \(or NLP_JAX_PROCESS_ID\)"):
        settings()
    with pytest.raises(ValueError, match=r"process id must be in \[0, 4\)"):
        settings(process_id=4)
    monkeypatch.setenv("NLP_JAX_PROCESS_ID", "one")
    with pytest.raises(ValueError, match="NLP_JAX_PROCESS_ID must be an integer, got 'one'"):
        settings()
    with pytest.raises(ValueError, match="HOST:PORT"):
        settings(coordinator="localhost", process_id=0)
