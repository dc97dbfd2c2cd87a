"""GAN losses against values computed by hand.

Logits: real = (0, 2), fake = (-1, 2). softplus(t) = log(1 + e^t):
softplus(0) = 0.693147, softplus(-2) = 0.126928, softplus(-1) = 0.313262, softplus(1) = 1.313262,
softplus(2) = 2.126928.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses

REAL = jnp.array([0.0, 2.0])
FAKE = jnp.array([-1.0, 2.0])

# (name, discriminator loss, generator loss), by hand:
EXPECTED = [
    # D: mean(softplus(-real)) + mean(softplus(fake)) = (0.693147 + 0.126928) / 2
    #    + (0.313262 + 2.126928) / 2 = 0.410038 + 1.220095; G: -mean(softplus(fake)).
    ("minimax", 1.630133, -1.220095),
    # Same D; G: mean(softplus(-fake)) = (1.313262 + 0.126928) / 2.
    ("non_saturating", 1.630133, 0.720095),
    # D: ½ mean((real - 1)²) + ½ mean(fake²) = ½ (1 + 1) / 2 + ½ (1 + 4) / 2 = 0.5 + 1.25;
    # G: ½ mean((fake - 1)²) = ½ (4 + 1) / 2.
    ("least_squares", 1.75, 1.25),
    # D: mean(relu(1 - real)) + mean(relu(1 + fake)) = (1 + 0) / 2 + (0 + 3) / 2; G: -mean(fake).
    ("hinge", 2.0, -0.5),
    # D: mean(fake) - mean(real) = 0.5 - 1; G: -mean(fake).
    ("wasserstein", -0.5, -0.5),
]


@pytest.mark.parametrize(("name", "d_expected", "g_expected"), EXPECTED)
def test_loss_values(name, d_expected, g_expected):
    loss = losses.get_loss(name)
    np.testing.assert_allclose(float(loss.discriminator(REAL, FAKE)), d_expected, atol=1e-5)
    np.testing.assert_allclose(float(loss.generator(FAKE)), g_expected, atol=1e-5)


def test_every_loss_is_tested():
    assert sorted(losses.LOSSES) == sorted(name for name, _, _ in EXPECTED)


def test_non_saturating_keeps_the_gradient_that_minimax_loses():
    # Where D confidently rejects a fake (logit -10), minimax's G gradient nearly vanishes.
    confident = jnp.array([-10.0])
    minimax = jax.grad(losses.minimax_generator)(confident)[0]
    non_saturating = jax.grad(losses.non_saturating_generator)(confident)[0]
    assert abs(float(minimax)) < 1e-4
    np.testing.assert_allclose(float(non_saturating), -1.0, atol=1e-4)


def test_auxiliary_classifier_cross_entropy():
    # Softmax of (0, log 3) is (1/4, 3/4): -log(3/4) = 0.287682 and -log(1/4) = 1.386294.
    logits = jnp.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    value = losses.auxiliary_classifier(logits, jnp.array([1, 0]))
    np.testing.assert_allclose(float(value), (0.287682 + 1.386294) / 2, atol=1e-5)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown GAN loss 'nope'"):
        losses.get_loss("nope")
