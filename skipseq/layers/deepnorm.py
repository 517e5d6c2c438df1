"""DeepNorm constants (Wang et al. 2022, "DeepNet").

DeepNorm is a post-norm residual, `y = LN(alpha * x + F(x))`, whose skip
multiplier `alpha` grows with depth while the initial weights of the
feed-forward network and of the value and output projections of attention
shrink by a factor `beta`. Both numbers depend only on the depths of the
encoder (`N` layers) and of the decoder (`M` layers):

```
encoder only:     alpha = (2N)^(1/4),           beta = (8N)^(-1/4)
decoder only:     alpha = (2M)^(1/4),           beta = (8M)^(-1/4)
enc-dec encoder:  alpha = 0.81 (N^4 M)^(1/16),  beta = 0.87 (N^4 M)^(-1/16)
enc-dec decoder:  alpha = (3M)^(1/4),           beta = (12M)^(-1/4)
```
"""

import collections

import keras

from skipseq.layers import _checks

DeepNormConstants = collections.namedtuple(
    "DeepNormConstants",
    ["encoder_alpha", "encoder_beta", "decoder_alpha", "decoder_beta"],
)


def deepnorm_constants(num_encoder_layers=0, num_decoder_layers=0):
    """Return the DeepNorm `alpha` and `beta` of an encoder and a decoder.

    Args:
        num_encoder_layers: int, `N`, the number of encoder blocks; `0`
            (default) for a decoder-only model.
        num_decoder_layers: int, `M`, the number of decoder blocks; `0`
            (default) for an encoder-only model.

    Returns:
        A `DeepNormConstants(encoder_alpha, encoder_beta, decoder_alpha,
        decoder_beta)`; the entries of a missing stack are `None`.

    Example:

    >>> c = deepnorm_constants(num_encoder_layers=6)
    >>> round(c.encoder_alpha, 4), round(c.encoder_beta, 4)
    (1.8612, 0.3799)
    """
    for name, value in (
        ("num_encoder_layers", num_encoder_layers),
        ("num_decoder_layers", num_decoder_layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"Argument `{name}` must be a non-negative integer. "
                f"Received: {name}={value!r}"
            )
    if num_encoder_layers == 0 and num_decoder_layers == 0:
        raise ValueError(
            "At least one of `num_encoder_layers` and `num_decoder_layers` "
            "must be positive. Received: num_encoder_layers=0, "
            "num_decoder_layers=0"
        )
    n, m = num_encoder_layers, num_decoder_layers
    if m == 0:
        return DeepNormConstants((2 * n) ** 0.25, (8 * n) ** -0.25, None, None)
    if n == 0:
        return DeepNormConstants(None, None, (2 * m) ** 0.25, (8 * m) ** -0.25)
    return DeepNormConstants(
        0.81 * (n**4 * m) ** (1 / 16),
        0.87 * (n**4 * m) ** (-1 / 16),
        (3 * m) ** 0.25,
        (12 * m) ** -0.25,
    )


def deepnorm_initializer(beta):
    """Xavier-normal initialiser with gain `beta`, as DeepNorm prescribes.

    `std = beta * sqrt(2 / (fan_in + fan_out))`; with `beta = 1` this is
    the plain Xavier (Glorot) normal initialiser.
    """
    _checks.positive("beta", beta)
    return keras.initializers.VarianceScaling(
        scale=beta**2, mode="fan_avg", distribution="untruncated_normal"
    )
