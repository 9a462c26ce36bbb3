"""``python -m nlp_jax``: the ``nlp-jax`` command (``nlp_jax.cli``)."""

import sys

from nlp_jax.cli import main

sys.exit(main())
