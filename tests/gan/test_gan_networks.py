"""Generator and discriminator shapes, parameter counts, conditioning and variable collections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import networks


def count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def init(module, *args, **kwargs):
    return module.init(jax.random.key(0), *args, **kwargs)


def shapes(module, *args, **kwargs):
    """The variables' shapes, without computing them."""
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))


def test_dcgan_28_matches_the_pytorch_reference_parameter_counts():
    # configs/bench/dcgan28.py compares against PyTorch's DCGAN with exactly these counts.
    g = networks.DCGANGenerator(image_size=28, channels=1, features=(128, 64))
    d = networks.DCGANDiscriminator(features=(64, 128))
    assert count(shapes(g, jnp.zeros((2, 100)))["params"]) == 771_969
    assert count(shapes(d, jnp.zeros((2, 28, 28, 1)))["params"]) == 138_561


@pytest.mark.parametrize(
    ("size", "g_features", "d_features"),
    [(28, (8, 4), (4, 8)), (32, (8, 8, 4), (4, 8, 8)), (64, (8, 8, 4, 4), (4, 4, 8, 8))],
)
def test_dcgan_shapes(size, g_features, d_features):
    g = networks.DCGANGenerator(image_size=size, channels=3, features=g_features)
    z = jnp.zeros((3, 5))
    x, _ = jax.eval_shape(lambda: g.apply(init(g, z), z, mutable=["batch_stats"]))
    assert x.shape == (3, size, size, 3)
    x = jnp.zeros(x.shape)
    for norm in ("none", "batch", "spectral"):
        d = networks.DCGANDiscriminator(features=d_features, norm=norm)
        d_vars = shapes(d, x)
        expected = {"none": {"params"}, "batch": {"params", "batch_stats"}}
        assert set(d_vars) == expected.get(norm, {"params", "spectral"})
        (logits, classes), _ = jax.eval_shape(lambda d=d: d.apply(init(d, x), x, mutable=True))
        assert logits.shape == (3,) and classes is None


def test_resnet_shapes_and_sngan_block_layout():
    g = networks.ResNetGenerator(image_size=32, channels=3, features=(8, 8, 8))
    z = jnp.zeros((2, 6))
    x, _ = jax.eval_shape(lambda: g.apply(init(g, z), z, mutable=["batch_stats"]))
    assert x.shape == (2, 32, 32, 3)
    x = jnp.zeros(x.shape)
    d = networks.ResNetDiscriminator(features=(8, 8, 8, 8))
    d_vars = shapes(d, x)
    (logits, _), _ = jax.eval_shape(
        lambda: d.apply(init(d, x), x, update_stats=True, mutable=["spectral"])
    )
    assert logits.shape == (2,)
    # Optimised block + down block (each with a 1x1 shortcut), then two blocks keeping 8x8 with
    # identity shortcuts: 2 + 2 + 2 + 2 3x3 convolutions and 2 shortcuts, all spectrally normalised.
    leaves = jax.tree_util.tree_leaves_with_path(d_vars["params"])
    kernels = [path for path, leaf in leaves if path[-1].key == "kernel" and leaf.ndim == 4]
    assert len(kernels) == 10
    assert len(jax.tree.leaves(d_vars["spectral"])) == 2 * (10 + 1)  # u and sigma, + Dense


def test_mlp_networks():
    g = networks.MLPGenerator(data_dim=2, features=(16, 16), norm="batch")
    z = jnp.ones((4, 3)).at[0].set(0.0)
    g_vars = init(g, z)
    assert set(g_vars) == {"params", "batch_stats"}
    points = g.apply(g_vars, z, train=False)
    assert points.shape == (4, 2)
    d = networks.MLPDiscriminator(features=(16, 16), norm="spectral")
    (logits, _), _ = d.apply(init(d, points), points, mutable=True)
    assert logits.shape == (4,)


@pytest.mark.parametrize("conditioning", ["embedding", "cbn"])
def test_conditional_generator_depends_on_the_label(conditioning):
    g = networks.DCGANGenerator(
        image_size=8, features=(8, 4), num_classes=3, conditioning=conditioning
    )
    z = jnp.ones((2, 5))
    labels = jnp.array([0, 1])
    variables = init(g, z, labels, train=False)
    if conditioning == "cbn":  # per-class scale 1 and shift 0 at init: make them differ
        embeddings = variables["params"]["GeneratorNorm_0"]["ConditionalBatchNorm_0"]
        shift = embeddings["Embed_1"]["embedding"]
        embeddings["Embed_1"]["embedding"] = shift.at[1].set(0.5)
    x = g.apply(variables, jnp.concatenate([z[:1], z[:1]]), labels, train=False)
    assert not np.allclose(x[0], x[1])


def test_projection_and_auxiliary_heads():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    labels = jnp.array([0, 2])
    d = networks.DCGANDiscriminator(features=(4, 8), num_classes=3, conditioning="projection")
    variables = init(d, x, labels)
    same_x = jnp.concatenate([x[:1], x[:1]])
    logits, classes = d.apply(variables, same_x, labels)
    assert classes is None and not np.allclose(logits[0], logits[1])
    aux = networks.DCGANDiscriminator(features=(4, 8), num_classes=3, conditioning="auxiliary")
    logits, classes = aux.apply(init(aux, x, labels), x, labels)
    assert logits.shape == (2,) and classes.shape == (2, 3)


def test_batch_norm_running_averages_only_change_in_train_mode():
    g = networks.DCGANGenerator(image_size=8, features=(8, 4))
    z = jax.random.normal(jax.random.key(0), (4, 5))
    variables = init(g, z)
    _, updates = g.apply(variables, z, train=True, mutable=["batch_stats"])
    before, after = jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(updates)
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    g.apply(variables, z, train=False)  # no mutable collection needed in eval mode


def test_build_networks_from_explicit_arguments():
    g, d = networks.build_networks(
        "dcgan",
        image_size=16,
        channels=3,
        num_classes=4,
        generator=dict(
            features=[8, 4], weight_init="xavier", norm="batch", conditioning="cbn", embedding_dim=7
        ),
        discriminator=dict(
            features=(4, 8), weight_init="xavier", norm="spectral", conditioning="projection"
        ),
    )
    assert g == networks.DCGANGenerator(
        image_size=16,
        channels=3,
        features=(8, 4),
        weight_init="xavier",
        norm="batch",
        num_classes=4,
        conditioning="cbn",
        embedding_dim=7,
    )
    assert d == networks.DCGANDiscriminator(
        features=(4, 8),
        norm="spectral",
        weight_init="xavier",
        num_classes=4,
        conditioning="projection",
    )
    mlp = networks.build_generator(
        "mlp", features=(5,), weight_init="default", norm="none", data_dim=3, activation="tanh"
    )
    assert mlp == networks.MLPGenerator(
        data_dim=3, features=(5,), activation="tanh", weight_init="default", norm="none"
    )
    resnet = networks.build_discriminator(
        "resnet", features=(4,), weight_init="xavier", norm="none"
    )
    assert isinstance(resnet, networks.ResNetDiscriminator) and resnet.norm == "none"
    for build in (networks.build_generator, networks.build_discriminator):
        with pytest.raises(ValueError, match="unknown architecture 'vit'"):
            build("vit", features=(4,), weight_init="default", norm="none")
