"""What repeated tokens and excess parameters are worth: Muennighoff et al. 2023.

"Scaling Data-Constrained Language Models" (arXiv 2305.16264), their law as
github.com/huggingface/datablations's README evaluates it: U unique tokens seen for e epochs are
worth D' = U min(e, 1) + U R_D* (1 - exp(-(e - 1) / R_D*)) unique ones, and N parameters beyond
U_N (the compute-optimal size for U tokens) are worth N' = U_N + U_N R_N* (1 - exp(-(N / U_N - 1)
/ R_N*)). Fitted R_D* = 15.39, R_N* = 5.31: excess parameters lose their value faster than
repeated tokens do. Up to ~4 epochs cost little against unique data.

Pure arithmetic, no JAX: `swahili100 plan-data` (and its worker processes) and `swahili100
ladder` import it.
"""

import math

R_D_STAR = 15.4    # the paper's fitted R_D* (15.387756)
R_N_STAR = 5.3     # its R_N* (5.309743)
FREE_EPOCHS = 4.0  # up to ~4 epochs of repeats cost little versus unique data (ibid.)


def effective_tokens(unique: float, epochs: float, r_d_star: float = R_D_STAR) -> float:
  """D': U min(e, 1) + U R* (1 - exp(-(e - 1) / R*)) for e epochs of U unique tokens."""
  repeats = max(epochs - 1.0, 0.0)
  return unique * (min(epochs, 1.0) + r_d_star * (1.0 - math.exp(-repeats / r_d_star)))


def effective_params(params: float, unique_params: float, r_n_star: float = R_N_STAR) -> float:
  """N': parameters beyond `unique_params` (U_N) lose value as repeated tokens do, faster."""
  base = min(params, unique_params)
  return effective_tokens(base, params / base, r_n_star)
