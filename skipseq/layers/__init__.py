"""Keras layers built around skip (residual) connections."""

from skipseq.layers.deepnorm import deepnorm_constants
from skipseq.layers.dropout import Dropout
from skipseq.layers.feedforward import FeedForward
from skipseq.layers.multi_head_attention import CachedMultiHeadAttention
from skipseq.layers.residual import DenseSkip, Residual
from skipseq.layers.residual_rnn import ResidualRNN
from skipseq.layers.residual_rnn_decoder import ResidualRNNDecoder
from skipseq.layers.rnn_attention import RNNAttention
from skipseq.layers.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from skipseq.layers.transformer_decoder import TransformerDecoder
from skipseq.layers.transformer_decoder_block import TransformerDecoderBlock
from skipseq.layers.transformer_encoder import TransformerEncoder
from skipseq.layers.transformer_encoder_block import TransformerEncoderBlock
