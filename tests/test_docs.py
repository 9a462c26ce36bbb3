"""The documentation site builds with warnings as errors (a broken reference fails), as ``make docs`` does,
and the README stays a user's guide."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("sphinx-build", path=str(Path(sys.executable).parent)) is None,
                    reason="the docs extra (sphinx, myst-parser, sphinx-book-theme) is not installed")
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    build = subprocess.run([str(Path(sys.executable).parent / "sphinx-build"), "-E", "-W", "--keep-going", "-q",
                            "-b", "html", str(ROOT / "docs"), str(tmp_path)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    for page in ("index", "results", "api", "areas/rlhf", "studies/rlhf_sentiment", "guide/core"):
        assert (tmp_path / f"{page}.html").stat().st_size > 0, page
    index = (tmp_path / "index.html").read_text()
    assert "The cheat sheet, concept by concept" in index and "api.html#module-nlp_jax.ops.preference" in index
    assert "0.908 ± 0.006 at 4.74 ± 0.08 nats" in (tmp_path / "results.html").read_text()  # a rendered headline


def test_the_readme_is_a_guide_of_at_most_350_lines_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 350
    assert "make demo" in readme and "make test" in readme and "| concept |" in readme
    for link in ("docs/results.md", "BENCHMARKS.md", "studies/rlhf_sentiment/README.md"):
        assert f"]({link})" in readme and (ROOT / link).exists(), link
