"""Sphinx configuration of the nlp_jax documentation site (MyST Markdown, the book theme, autodoc), built by
``make docs`` with warnings as errors and by the test suite (tests/test_docs.py)."""

import pathlib
import re

project = "nlp_jax"
author = "the nlp_jax developers"
copyright = "2026, the nlp_jax developers"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx.ext.viewcode"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
suppress_warnings = ["myst.header"]  # the logs moved from the old README keep their bold headings

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"  # the signatures show the annotations; docstrings carry the shapes
autodoc_mock_imports = ["torch", "transformers", "gensim", "sklearn"]

html_theme = "sphinx_book_theme"
html_title = "nlp_jax"
html_static_path = ["_static"]
html_theme_options = {"show_toc_level": 2, "collapse_navbar": True}


def _site_links(text: str) -> str:
    """The README's and BENCHMARKS' links as the site needs them: a package file becomes a link to its API
    reference, a study's README to its page, a file of the repository (a test, an experiment) its path in
    code; the docs' own pages stay links."""
    def link(match):
        label, target = match.group(1), match.group(2)
        if target.startswith(("http://", "https://", "#")):
            return match.group(0)
        if target.startswith("docs/"):
            return f"[{label}]({target.removeprefix('docs/')})"
        if target.startswith("studies/") and target.endswith("/README.md"):
            return f"[{label}]({target.removesuffix('/README.md')}.md)"
        if target.startswith("nlp_jax/") and target.endswith(".py"):
            module = target.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            return f"{{py:mod}}`{label.replace('`', '')} <{module}>`"
        return f"{label} (`{target}`)" if not label.startswith("`") else label
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, text)


_generated = pathlib.Path(__file__).parent / "_generated"
_generated.mkdir(exist_ok=True)
for _name in ("README.md", "BENCHMARKS.md"):
    _text = _site_links((pathlib.Path(__file__).parents[1] / _name).read_text())
    if not (_generated / _name).exists() or (_generated / _name).read_text() != _text:
        (_generated / _name).write_text(_text)  # rewritten only when changed: Sphinx rebuilds what includes it
# every reference must resolve (a broken one fails the build), but for the types autodoc and napoleon
# draw from annotations and docstrings (flax's, numpy's and the package's aliases have no page here)
nitpicky = True
nitpick_ignore_regex = [("py:class", r".*")]
