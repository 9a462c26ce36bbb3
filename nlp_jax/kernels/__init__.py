"""The fast paths of the equations in ``nlp_jax.ops``, behind one dispatch (``kernels.dispatch``): each
function here takes the arguments of its ``ops`` reference plus ``implementation=`` ('auto', 'reference',
'xla', 'cudnn', 'cpu', 'blockwise'; each op accepts its subset), chosen for the platform the computation is
lowered for. The C++ CPU kernels (XLA FFI) live in ``csrc/`` and are built on first use by ``kernels.build``;
the memory-efficient paths (``blockwise`` attention, ``linear_cross_entropy``) are pure JAX and run anywhere."""

from nlp_jax.kernels.chunked_xent import linear_cross_entropy
from nlp_jax.kernels.dispatch import IMPLEMENTATIONS
from nlp_jax.kernels.elementwise import cross_entropy, gelu, layer_norm
from nlp_jax.kernels.lstm import lstm_layer
from nlp_jax.kernels.matmul import dense
from nlp_jax.kernels.sdpa import attention
from nlp_jax.kernels.sgns import sgns_train

__all__ = ["IMPLEMENTATIONS", "attention", "cross_entropy", "dense", "gelu", "layer_norm", "linear_cross_entropy",
           "lstm_layer", "sgns_train"]
