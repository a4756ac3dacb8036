"""The tanh RNN of the recurrent finetuning experiment (docs/theory.md, "Experiments";
paper appendix B.3, Fig. 7A): row-wise sequential MNIST, 28 steps of 28 pixels.

    h_t = tanh(W_in x_t + b_in + W_rec h_{t-1} + b_rec),   h_0 = 0,   logits = readout(h_28)

as torch's `nn.RNN(28, hidden, nonlinearity="tanh", batch_first=True)` followed by an
`nn.Linear(hidden, 10)` on the last step (the paper's code). torch's two biases are kept (their sum
is the single bias b), and so is its init: every RNN weight and bias U(+-1/sqrt(hidden)), so no
weight starts at exactly zero and negative entropy can train all of them.

Names: the input projection is module `input` (torch `weight_ih_l0`, `bias_ih_l0`), the recurrent
matrix module `recurrent` (`weight_hh_l0`, `bias_hh_l0`), the classifier `readout`. Only the
recurrent matrix is analysed (D = hidden^2), as in the paper's code.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mdgeom.models import Model, register
from mdgeom.models.resnet import readout

# torch nn.RNN's parameter names for the zoo's (module, leaf) of this model.
TORCH_NAMES = {("input", "kernel"): "weight_ih_l0", ("input", "bias"): "bias_ih_l0",
               ("recurrent", "kernel"): "weight_hh_l0", ("recurrent", "bias"): "bias_hh_l0"}


def from_torch_keys(state_dict, prefix: str = "rnn.") -> dict:
  """A state dict of the paper's torch module (`rnn` = nn.RNN, `fc` = nn.Linear) with the zoo's
  keys ("input.weight", "recurrent.bias", ...), ready for `torch_import.import_torch`."""
  names = {f"{prefix}{t}": f"{mod}.{'weight' if leaf == 'kernel' else 'bias'}"
           for (mod, leaf), t in TORCH_NAMES.items()}
  return {names.get(k, k): v for k, v in state_dict.items()}


def _uniform(bound: float):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Recurrent(nn.Module):
  """The recurrence over a precomputed input drive u (B, T, H): one `lax.scan` over time (no
  Python loop, so the compiled graph does not grow with T). Returns the last state (B, H)."""
  features: int

  @nn.compact
  def __call__(self, u):
    init = _uniform(1.0 / math.sqrt(self.features))
    kernel = self.param("kernel", init, (self.features, self.features))  # (in, out) = W_rec^T
    bias = self.param("bias", init, (self.features,))

    def step(h, u_t):
      return jnp.tanh(u_t + h @ kernel + bias), None

    h0 = jnp.zeros((u.shape[0], self.features), u.dtype)
    h, _ = jax.lax.scan(step, h0, jnp.swapaxes(u, 0, 1))
    return h


class RNN(nn.Module):
  """Reads an image (B, H, W, C) row by row (H steps of W * C values); tanh recurrence; readout
  of the last state."""
  hidden: int = 100
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    b, steps = x.shape[0], x.shape[1]
    x = x.reshape(b, steps, -1)
    init = _uniform(1.0 / math.sqrt(self.hidden))
    # The input drive of all steps in one matmul; only W_rec h_{t-1} is sequential.
    u = nn.Dense(self.hidden, kernel_init=init, bias_init=init, name="input")(x)
    h = Recurrent(self.hidden, name="recurrent")(u)
    return readout(self.num_classes, self.hidden)(h)


def analysed(path: str, leaf=None) -> bool:
  """The RNN's analysed weights: the recurrent matrix only (D = hidden^2), as the paper."""
  return path.endswith("['recurrent']['kernel']") and "'batch_stats'" not in path


def rnn(hidden: int, num_classes: int = 10, input_shape: tuple = (28, 28, 1)) -> Model:
  """A tanh RNN with `hidden` units on row-wise sequential images (torch nn.RNN + nn.Linear)."""
  return Model(f"rnn{hidden}", RNN(int(hidden), num_classes), tuple(input_shape), num_classes,
               rename={"readout": "fc"}, analysed=analysed,
               reference="torch.nn.RNN(28, hidden, nonlinearity='tanh') + nn.Linear "
                         "(Pogodin et al. 2024, finetuning_rnn.py)")


@register("rnn100")
def rnn100(num_classes: int = 10) -> Model:
  """The paper's tanh RNN with 100 hidden units (D = 10^4 recurrent weights)."""
  return rnn(100, num_classes)


@register("rnn1000")
def rnn1000(num_classes: int = 10) -> Model:
  """The paper's tanh RNN with 1000 hidden units (D = 10^6 recurrent weights)."""
  return rnn(1000, num_classes)
