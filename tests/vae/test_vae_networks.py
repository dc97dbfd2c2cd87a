import jax
import numpy as np
import pytest

from experiments import rng
from experiments.errors import ConfigError
from vae_jax import networks


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(encoder="mlp", hidden_widths=(500,)),
        dict(encoder="mlp", hidden_widths=(16, 8), activation="tanh"),  # Burda et al.'s depth
        dict(encoder="mlp", hidden_widths=()),
        dict(encoder="conv", conv_features=(4, 8), hidden=16),
    ],
)
def test_output_shapes_at_28px(kwargs):
    model = networks.build_vae(image_shape=(28, 28, 1), latent_dim=3, **kwargs)
    x = np.zeros((2, 28, 28, 1), np.float32)
    key = jax.random.key(0)
    variables = jax.eval_shape(model.init, key, x, key)
    logits, mean, logvar = jax.eval_shape(model.apply, variables, x, key)
    assert logits.shape == (2, 28, 28, 1)
    assert mean.shape == logvar.shape == (2, 3)
    mean, logvar = jax.eval_shape(
        lambda v: model.apply(v, x, method=networks.VAE.encode), variables
    )
    assert mean.shape == (2, 3)
    z = np.zeros((5, 3), np.float32)
    decoded = jax.eval_shape(lambda v: model.apply(v, z, method=networks.VAE.decode), variables)
    assert decoded.shape == (5, 28, 28, 1)


def test_mlp_layer_widths():
    model = networks.build_vae(
        encoder="mlp", image_shape=(4, 4, 1), latent_dim=2, hidden_widths=(6, 5)
    )
    x = np.zeros((1, 4, 4, 1), np.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x, jax.random.key(1))["params"]
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes["encoder"]["hidden"]["Dense_0"]["kernel"] == (16, 6)
    assert shapes["encoder"]["hidden"]["Dense_1"]["kernel"] == (6, 5)
    assert shapes["encoder"]["mean"]["kernel"] == shapes["encoder"]["logvar"]["kernel"] == (5, 2)
    # The decoder mirrors the encoder: 2 -> 5 -> 6 -> 16.
    assert shapes["decoder"]["layers"]["Dense_0"]["kernel"] == (2, 5)
    assert shapes["decoder"]["layers"]["Dense_1"]["kernel"] == (5, 6)
    assert shapes["decoder"]["layers"]["Dense_2"]["kernel"] == (6, 16)
    assert shapes["decoder"]["output_bias"]["bias"] == (4, 4, 1)


def test_conv_needs_side_divisible_by_four():
    with pytest.raises(ConfigError, match="divisible by 4"):
        networks.build_vae(encoder="conv", image_shape=(30, 30, 1), latent_dim=2)


@pytest.mark.parametrize("kwargs", [dict(encoder="rnn"), dict(activation="gelu_nope")])
def test_bad_names_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        networks.build_vae(
            **{"encoder": "mlp", "image_shape": (4, 4, 1), "latent_dim": 2, **kwargs}
        )


def test_call_draws_z_per_example_with_the_one_reparameterisation():
    """``VAE.__call__`` decodes ``objectives.reparameterize(mean, logvar, eps)`` with example ``i``'s
    noise from its own key: the output of an example does not depend on the rest of the batch."""
    model = networks.build_vae(
        encoder="mlp", image_shape=(4, 4, 1), latent_dim=3, hidden_widths=(8,)
    )
    rs = np.random.RandomState(0)
    x = rs.uniform(size=(4, 4, 4, 1)).astype(np.float32)
    key = rng.purpose_key(jax.random.key(3), "posterior")
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, key)
    variables = jax.tree.map(lambda s: rs.normal(size=s.shape).astype(np.float32), shapes)
    output4, mean, logvar = model.apply(variables, x, key)
    output2, _, _ = model.apply(variables, x[:2], key)
    np.testing.assert_array_equal(np.asarray(output4)[:2], np.asarray(output2))
    eps = rng.normal_per_example(key, (4, 3))
    z = np.asarray(mean) + np.exp(0.5 * np.asarray(logvar)) * np.asarray(eps)
    decoded = model.apply(variables, z, method=networks.VAE.decode)
    np.testing.assert_allclose(output4, decoded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "image_shape, conv_features",
    [((28, 28, 1), (32, 64)), ((32, 32, 3), (8, 16, 32)), ((64, 64, 3), (8, 8, 16, 16))],
)
@pytest.mark.parametrize("params_per_channel", [1, 2])
def test_conv_vae_at_28_32_and_64_px(image_shape, conv_features, params_per_channel):
    model = networks.build_vae(
        encoder="conv",
        image_shape=image_shape,
        latent_dim=4,
        conv_features=conv_features,
        hidden=16,
        params_per_channel=params_per_channel,
    )
    x = np.zeros((2, *image_shape), np.float32)
    key = jax.random.key(0)
    variables = jax.eval_shape(model.init, key, x, key)
    output, mean, logvar = jax.eval_shape(model.apply, variables, x, key)
    assert output.shape == (2, *image_shape[:2], image_shape[2] * params_per_channel)
    assert mean.shape == logvar.shape == (2, 4)


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_conditional_vae_uses_the_label_in_both_networks(encoder):
    model = networks.build_vae(
        encoder=encoder,
        image_shape=(8, 8, 1),
        latent_dim=2,
        hidden_widths=(6,),
        conv_features=(4,),
        hidden=6,
        num_classes=3,
    )
    rs = np.random.RandomState(0)
    x = rs.uniform(size=(3, 8, 8, 1)).astype(np.float32)
    labels = np.array([0, 1, 2])
    variables = model.init(jax.random.key(0), x, jax.random.key(1), labels)
    variables = jax.tree.map(lambda a: a + 0.1, variables)  # non-zero biases and output bias
    mean_a, _ = model.apply(variables, x, labels, method=networks.VAE.encode)
    mean_b, _ = model.apply(variables, x, (labels + 1) % 3, method=networks.VAE.encode)
    assert not np.allclose(mean_a, mean_b)
    z = np.zeros((3, 2), np.float32)
    out_a = model.apply(variables, z, labels, method=networks.VAE.decode)
    out_b = model.apply(variables, z, (labels + 1) % 3, method=networks.VAE.decode)
    assert out_a.shape == (3, 8, 8, 1) and not np.allclose(out_a, out_b)
    with pytest.raises(ValueError, match="labels"):
        model.apply(variables, z, method=networks.VAE.decode)


def causal_conv_reference(x, kernel):
    """``networks.causal_conv`` by loops: the taps of rows above (within k // 2) and of the pixels
    left of the centre in the current row, zero padding."""
    rows, size = kernel.shape[:2]
    half = size // 2
    batch, height, width, _ = x.shape
    out = np.zeros((batch, height, width, kernel.shape[-1]))
    for r in range(height):
        for c in range(width):
            for dr in range(rows):
                for dc in range(size):
                    if dr == half and dc >= half:
                        continue  # the pixel itself and those after it
                    rr, cc = r - half + dr, c - half + dc
                    if 0 <= rr < height and 0 <= cc < width:
                        out[:, r, c] += x[:, rr, cc] @ kernel[dr, dc]
    return out


def test_causal_conv_matches_loops():
    rs = np.random.RandomState(0)
    x = rs.normal(size=(2, 5, 6, 2)).astype(np.float32)
    kernel = rs.normal(size=(3, 5, 2, 3)).astype(np.float32)  # k = 5
    np.testing.assert_allclose(
        networks.causal_conv(x, kernel), causal_conv_reference(x, kernel), rtol=1e-5, atol=1e-5
    )


def autoregressive_vae(image_shape=(6, 6, 1), encoder="conv"):
    model = networks.build_vae(
        encoder=encoder,
        image_shape=image_shape,
        latent_dim=3,
        hidden_widths=(8,),
        conv_features=(4,),
        hidden=8,
        autoregressive_kernel=5,
        autoregressive_features=4,
    )
    x = np.zeros((1, *image_shape), np.float32)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    # A non-zero output bias, so that a test also sees where the head adds it.
    bias = jax.random.normal(jax.random.key(2), params["autoregressive"]["output_bias"].shape)
    params = {**params, "autoregressive": {**params["autoregressive"], "output_bias": bias}}
    return model, params


def autoregressive_logits(model, params, z, x):
    context = model.apply({"params": params}, x, method=networks.VAE.context)
    return model.apply({"params": params}, z, None, context, method=networks.VAE.decode)


def test_autoregressive_decoder_is_causal_in_raster_order():
    model, params = autoregressive_vae()
    z = jax.random.normal(jax.random.key(3), (1, 3))
    x = np.asarray(jax.random.bernoulli(jax.random.key(4), 0.5, (1, 6, 6, 1)), np.float32)
    # Forward mode, jitted: one compilation instead of one per operation of 36 backward passes.
    logits = lambda x: autoregressive_logits(model, params, z, x)[0, ..., 0]
    jacobian = jax.jit(jax.jacfwd(logits))(x)
    jacobian = np.asarray(jacobian).reshape(36, 36)  # d logit[i] / d x[j], raster order
    later = np.triu(np.ones((36, 36), bool))  # j >= i
    assert np.all(jacobian[later] == 0.0)
    # ... and it does use the pixels before: the left neighbour and the one above.
    i = 2 * 6 + 3
    assert jacobian[i, i - 1] != 0.0 and jacobian[i, i - 6] != 0.0
    assert jacobian[i, i - 3] == 0.0  # beyond the kernel's half-width 2 in the current row


def test_autoregressive_pixel_equals_the_full_pass():
    model, params = autoregressive_vae()
    z = jax.random.normal(jax.random.key(5), (3, 3))
    x = np.asarray(jax.random.bernoulli(jax.random.key(6), 0.5, (3, 6, 6, 1)), np.float32)
    full = autoregressive_logits(model, params, z, x)
    features = model.apply({"params": params}, z, method=networks.VAE.decoder_features)
    for row, col in [(0, 0), (0, 5), (3, 2), (5, 5)]:
        pixel = model.apply({"params": params}, features, x, row, col, method=networks.VAE.pixel)
        np.testing.assert_allclose(pixel, full[:, row, col], rtol=1e-5, atol=1e-6)


def test_autoregressive_likelihood_sums_to_one_over_all_images():
    """p(x | z) = prod_i p(x_i | x_<i, z) is a distribution only if the decoder is causal: summed
    over all 2^(2*3) binary 2x3 images it is 1 (a non-causal decoder gives anything)."""
    from vae_jax import likelihoods

    model, params = autoregressive_vae(image_shape=(2, 3, 1), encoder="mlp")
    bits = (np.arange(64)[:, None] >> np.arange(6)[None, :]) & 1
    images = bits.reshape(64, 2, 3, 1).astype(np.float32)
    for seed in range(3):
        z = np.repeat(jax.random.normal(jax.random.key(seed), (1, 3)), 64, axis=0)
        log_px = likelihoods.bernoulli_log_prob(
            autoregressive_logits(model, params, z, images), images
        )
        np.testing.assert_allclose(float(jax.nn.logsumexp(log_px)), 0.0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(autoregressive_kernel=4), "odd"),
        (dict(autoregressive_kernel=1), "odd"),
        (dict(autoregressive_kernel=3, autoregressive_features=0), "autoregressive_features"),
    ],
)
def test_autoregressive_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        networks.build_vae(encoder="mlp", image_shape=(4, 4, 1), latent_dim=2, **kwargs)
