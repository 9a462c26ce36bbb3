import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Tests check what a program computes, not how fast its machine code runs, and compiling XLA's CPU programs is
# most of the suite's time (thousands of small ones: models run eagerly op by op). LLVM at -O0 instead of -O3,
# and XLA's classic loop emitters instead of its newer MLIR fusion emitters, compile them in a fraction of the
# time (this suite on 2 AVX-512 cores, 2026-12-06: 721 s at -O1, 503 s at -O0, cold compilation cache); the
# arithmetic is IEEE either way (no fast-math), though a transcendental may round in another last bit, and a
# test that runs much arithmetic (a frozen encoder's features) runs a little slower.
# Set before JAX starts, in the first process (the xdist controller, or pytest alone); the processes it starts
# inherit it. NLP_JAX_TEST_XLA_FLAGS="" keeps XLA's
# defaults. A jaxlib that no longer knows a flag aborts at its start, so the flags are tried once first.
_FLAGS = os.environ.get("NLP_JAX_TEST_XLA_FLAGS",
                        "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")
if _FLAGS and "NLP_JAX_TEST_SHARED" not in os.environ:
    _flags = f"{os.environ.get('XLA_FLAGS', '')} {_FLAGS}".strip()
    _probe = subprocess.run([sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
                            env={**os.environ, "XLA_FLAGS": _flags, "JAX_PLATFORMS": "cpu"}, capture_output=True)
    if _probe.returncode == 0:
        os.environ["XLA_FLAGS"] = _flags
    else:
        print(f"tests/conftest.py: this jaxlib refuses the test XLA flags {_FLAGS!r}; using its defaults "
              f"({_probe.stderr.decode(errors='replace').strip().splitlines()[-1:]})", file=sys.stderr)

import jax  # noqa: E402

# One compilation cache for the suite's processes: a program compiled once (the tiny models many tests share,
# closures jitted anew at every call) is read back, not compiled again, by either pytest worker. It lives in
# the checkout's .cache/ (git-ignored); NLP_JAX_TEST_JAX_CACHE="" turns it off. The processes tests start
# (the launcher, the 8-device and multi-host workers) do not use it: multi-process JAX coordinates its
# cache across processes, which a test's short-lived workers must not wait on.
_CACHE = os.environ.get("NLP_JAX_TEST_JAX_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # small ones too: the other worker reuses them
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_enable_x64", False)
# float64-reference tolerances assume full-precision matmuls: on GPUs/TPUs the default lets XLA use TF32 or
# bfloat16 passes, which would break them (on CPU this changes nothing).
jax.config.update("jax_default_matmul_precision", "highest")


# ---- scheduling -------------------------------------------------------------------------------------------

def pytest_collection_modifyitems(config, items):
    """The tests marked ``slow`` first (a stable sort, the same order in every xdist worker), so the two
    workers are not left with one long test each at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# ---- long subprocess runs that several tests read ----------------------------------------------------------
# A run that forces its own device count (an XLA flag set before JAX starts) needs a process of its own. It is
# started once per session, in the background, as soon as collection shows a test that reads it, so no pytest
# worker waits idle for another one's run; its fixture waits for the result.

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND = {"mesh_runs": [sys.executable, str(ROOT / "tests" / "train" / "mesh_worker.py")]}


def pytest_configure(config):
    """The session's shared folder, made by the first process (the xdist controller, or pytest alone) and
    named to the workers it starts through the environment they inherit."""
    if "NLP_JAX_TEST_SHARED" not in os.environ:
        os.environ["NLP_JAX_TEST_SHARED"] = tempfile.mkdtemp(prefix="nlp_jax-tests-")
        config.stash[_OWNED] = Path(os.environ["NLP_JAX_TEST_SHARED"])


def pytest_unconfigure(config):
    if _OWNED in config.stash:
        shutil.rmtree(config.stash[_OWNED], ignore_errors=True)
        del os.environ["NLP_JAX_TEST_SHARED"]


def _start(config, name: str) -> Path:
    """Start ``BACKGROUND[name]`` unless a worker of this session already did; its folder (``out``, ``err``
    and, once it has exited, ``rc``)."""
    folder = Path(os.environ["NLP_JAX_TEST_SHARED"]) / name
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not folder.exists():
            folder.mkdir()
            command = (f"{shlex.join(BACKGROUND[name])} > {folder / 'out'} 2> {folder / 'err'}; "
                       f"echo $? > {folder / 'rc.tmp'} && mv {folder / 'rc.tmp'} {folder / 'rc'}")
            proc = subprocess.Popen(["sh", "-c", command], env={**os.environ, "JAX_PLATFORMS": "cpu"},
                                    start_new_session=True)
            config.stash.setdefault(_STARTED, []).append(proc)
    return folder


_STARTED, _OWNED = pytest.StashKey[list](), pytest.StashKey[Path]()


def pytest_collection_finish(session):
    for name in BACKGROUND:
        if any(name in getattr(item, "fixturenames", ()) for item in session.items):
            _start(session.config, name)


def pytest_sessionfinish(session, exitstatus):
    """A run this process started is waited for while another xdist worker may still read it, and stopped,
    not orphaned, when nobody else can (pytest alone, or an interrupted session)."""
    others = hasattr(session.config, "workerinput") and exitstatus != pytest.ExitCode.INTERRUPTED
    for proc in session.config.stash.get(_STARTED, []):
        if not others and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def background_result(config, name: str, timeout: float = 900) -> dict:
    """The JSON object the last line of ``BACKGROUND[name]``'s output holds, once it has finished."""
    folder, deadline = _start(config, name), time.monotonic() + timeout
    while not (folder / "rc").exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not finish in {timeout:.0f} s; its stderr ends: "
                        f"{(folder / 'err').read_text()[-3000:]}")
        time.sleep(0.5)
    rc = int((folder / "rc").read_text())
    assert rc == 0, f"{name} exited with {rc}: {(folder / 'err').read_text()[-3000:]}"
    return json.loads((folder / "out").read_text().strip().splitlines()[-1])


@pytest.fixture
def refusal(capsys):
    """``refusal(argv) -> message``: run the ``nlp-jax`` command ``argv``, which must refuse it (exit status 1 with
    its message on stderr, or argparse's exit 2), and return what it said."""
    from nlp_jax.cli import main

    def run(argv: list[str]) -> str:
        capsys.readouterr()
        try:
            status = main(argv)
        except SystemExit as err:
            return f"{err.code} {capsys.readouterr().err}"
        assert status == 1, f"{argv} was not refused (exit status {status})"
        return capsys.readouterr().err

    return run


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT encoder (2 layers of 16, context 64) as a HF directory with a WordPiece vocabulary of
    120 trained on 300 SST-2 phrases: what the experiments that fine-tune MiniLM run on in their smoke tests
    (MiniLM's own loading is checked against transformers in tests/models/test_bert_hf.py)."""
    from flax import nnx

    from nlp_jax.data.sst2 import read_sst2
    from nlp_jax.data.wordpiece import WordPieceTokenizer
    from nlp_jax.models.bert import BertConfig, BertEncoder
    from nlp_jax.models.bert_hf import save_hf_bert

    tok = WordPieceTokenizer.train(read_sst2("train")[0][:300], 120, max_length=64)
    encoder = BertEncoder(BertConfig.tiny(vocab_size=tok.vocab_size, block_size=64), rngs=nnx.Rngs(0))
    return save_hf_bert(encoder, tmp_path_factory.mktemp("tiny_bert"), tokenizer=tok)


@pytest.fixture(scope="session")
def mesh_runs(request):
    """tests/train/mesh_worker.py's measurements (the same tiny models trained on one device and on meshes of
    8 forced host devices), for tests/train/test_sharding.py."""
    return background_result(request.config, "mesh_runs")
