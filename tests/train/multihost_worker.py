"""One of the 2 processes tests/train/test_multihost.py starts on 127.0.0.1 (argv: port, process id,
workdir), 4 forced CPU devices each: the loop on the global 2 x 4 mesh; prints its losses as JSON."""

import faulthandler
import json
import os
import signal
import sys

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
# SIGUSR1 prints every thread's Python stack: the test sends it to a pair that has not finished in time
faulthandler.register(signal.SIGUSR1, all_threads=True)

from nlp_jax.train import distributed  # noqa: E402

port, pid, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
distributed.initialize(coordinator=f"127.0.0.1:{port}", num_processes=2, process_id=pid)

import jax  # noqa: E402
from flax import nnx  # noqa: E402
from tiny_gpt_run import GPT, OPTIM, SOURCE  # noqa: E402

from nlp_jax.models.gpt2 import GPT2  # noqa: E402
from nlp_jax.objectives import lm_loss  # noqa: E402
from nlp_jax.train.config import MeshConfig, TrainConfig  # noqa: E402
from nlp_jax.train.loop import train  # noqa: E402


@nnx.jit
def val_loss(model, batch):  # one program: op-by-op eager collectives across two processes hung once under load
    return lm_loss(model, batch, None)[0]


cfg = TrainConfig(steps=4, log_every=1, eval_every=2, ckpt_every=2, progress=True, mesh=MeshConfig(data=2, fsdp=4))
_, result = train(GPT2(GPT, rngs=nnx.Rngs(0)), lm_loss, SOURCE, train_cfg=cfg, optim_cfg=OPTIM, workdir=workdir,
                  eval_fn=lambda model: {"val_loss": float(val_loss(model, SOURCE(99)))})
print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(), "local": jax.local_device_count(),
                  "losses": [result.losses[s] for s in sorted(result.losses)],
                  "val_loss": result.evals[-1]["val_loss"]}))
