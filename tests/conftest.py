"""Shared test set-up: one torch thread per test process.

``make test`` runs two pytest workers on a 2-core machine; letting each also start two intra-op
threads oversubscribes the cores and made small torch ops up to 40x slower in practice.
"""

import torch

torch.set_num_threads(1)
