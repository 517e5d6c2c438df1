"""Keras layers built around skip (residual) connections."""

from skipseq.layers.residual import DenseSkip, Residual
from skipseq.layers.residual_rnn import ResidualRNN
