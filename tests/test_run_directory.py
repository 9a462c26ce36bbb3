"""A run directory belongs to one experiment and one process; ``train.resume=false`` moves all of it aside
(issue 40, cause 3). Checked through the real launcher on two small experiments written here, so no model
is trained."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlp_jax.run import main

EXPERIMENT = '''
import dataclasses
from pathlib import Path

from nlp_jax.train.config import TrainConfig
from nlp_jax.train.records import run_lock, write_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    workdir: str = "runs/x"
    train: TrainConfig = TrainConfig(steps=1)


def get_config(arg=None):
    return Config()


def run(cfg):
    with run_lock(cfg.workdir):  # the training loop takes the launcher's lock again: reentrant
        work = Path(cfg.workdir)
        tok = work / "tokenizer" / "tokenizer.json"
        vocabulary = tok.read_text() if tok.exists() else None
        tok.parent.mkdir(parents=True, exist_ok=True)
        tok.write_text("{NAME}-vocabulary")
        (work / "summary.json").write_text('{"status": "finished", "read": "%s"}' % vocabulary)
        write_config(work, cfg)
    return {"status": "finished", "read": vocabulary}
'''


@pytest.fixture
def experiments(tmp_path):
    for name in ("first", "second"):
        (tmp_path / f"{name}.py").write_text(EXPERIMENT.replace("{NAME}", name))
    return tmp_path


def test_another_experiment_is_refused_before_any_work(experiments, tmp_path):
    work = tmp_path / "run"
    main([f"{experiments / 'first.py'}", "--set", f"workdir={work}"])
    assert json.loads((work / "run.json").read_text()) == {"experiment": "first.Config"}
    with pytest.raises(ValueError, match=r"holds a run of first.Config, not of second.Config"):
        main([f"{experiments / 'second.py'}", "--set", f"workdir={work}", "--rerun"])
    assert (work / "tokenizer" / "tokenizer.json").read_text() == "first-vocabulary"  # not read, not replaced
    again = main([f"{experiments / 'first.py'}", "--set", f"workdir={work}", "--rerun"])
    assert again["read"] == "first-vocabulary"  # the owner itself resumes with its files


def test_resume_false_moves_everything_aside_tokenizer_included(experiments, tmp_path):
    work = tmp_path / "run"
    main([f"{experiments / 'first.py'}", "--set", f"workdir={work}"])
    fresh = main([f"{experiments / 'first.py'}", "--set", f"workdir={work}", "--set", "train.resume=false"])
    assert fresh["read"] is None  # a new vocabulary, not the old one
    assert (work / "previous-1" / "tokenizer" / "tokenizer.json").read_text() == "first-vocabulary"
    assert (work / "previous-1" / "summary.json").exists() and (work / "run.json").exists()


def test_a_second_process_is_refused_at_start_and_an_empty_workdir_is_an_error(experiments, tmp_path, capsys):
    work = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nlp_jax.train.records import run_lock\n"
                               f"with run_lock({str(work)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=f"is in use by another run \\(pid {holder.pid}\\)"):
            main([f"{experiments / 'first.py'}", "--set", f"workdir={work}"])
        assert not (work / "run.json").exists() and not (work / "tokenizer").exists()  # nothing done
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    while time.time() < deadline:  # the lock is the kernel's: free as soon as the holder is gone
        try:
            main([f"{experiments / 'first.py'}", "--set", f"workdir={work}"])
            break
        except RuntimeError:
            time.sleep(0.1)
    assert (work / "run.json").exists()
    with pytest.raises(SystemExit):
        main([f"{experiments / 'first.py'}", "--set", "workdir="])
    assert "workdir is empty" in capsys.readouterr().err


def test_a_read_only_finished_run_still_reports_its_stored_results(experiments, tmp_path, monkeypatch):
    import nlp_jax.run

    work = tmp_path / "run"
    main([f"{experiments / 'first.py'}", "--set", f"workdir={work}"])

    def read_only(*args, **kw):
        raise PermissionError(f"[Errno 30] Read-only file system: {work / '.lock'}")

    monkeypatch.setattr(nlp_jax.run, "run_lock", read_only)  # nothing may be written there: nothing need be
    assert main([f"{experiments / 'first.py'}", "--set", f"workdir={work}"]) == {"status": "finished", "read": "None"}
