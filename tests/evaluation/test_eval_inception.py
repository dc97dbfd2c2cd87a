"""The TF-FID InceptionV3: architecture and loader on random weights in the published format, the
resizer against PyTorch's formula, and parity with pytorch-fid when the real weights and torch are
present."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.evaluation import features, inception

WEIGHTS_ENV_VAR = "GAN_VAE_JAX_INCEPTION_WEIGHTS"  # the converted .npz, for the parity test
PTH_ENV_VAR = "GAN_VAE_JAX_INCEPTION_PTH"  # the original .pth, for the parity test


def basic_conv(prefix: str, cin: int, cout: int, kh: int, kw: int | None = None) -> dict:
    """The state_dict entries of torchvision's BasicConv2d (conv without bias, BatchNorm)."""
    kw = kh if kw is None else kw
    return {
        f"{prefix}.conv.weight": (cout, cin, kh, kw),
        f"{prefix}.bn.weight": (cout,),
        f"{prefix}.bn.bias": (cout,),
        f"{prefix}.bn.running_mean": (cout,),
        f"{prefix}.bn.running_var": (cout,),
    }


def published_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of pt_inception-2015-12-05-6726825d.pth, written out from torchvision's
    Inception3 (aux_logits=False, num_classes=1008) independently of the module under test."""
    spec = {}
    spec |= basic_conv("Conv2d_1a_3x3", 3, 32, 3)
    spec |= basic_conv("Conv2d_2a_3x3", 32, 32, 3)
    spec |= basic_conv("Conv2d_2b_3x3", 32, 64, 3)
    spec |= basic_conv("Conv2d_3b_1x1", 64, 80, 1)
    spec |= basic_conv("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        spec |= basic_conv(f"{name}.branch1x1", cin, 64, 1)
        spec |= basic_conv(f"{name}.branch5x5_1", cin, 48, 1)
        spec |= basic_conv(f"{name}.branch5x5_2", 48, 64, 5)
        spec |= basic_conv(f"{name}.branch3x3dbl_1", cin, 64, 1)
        spec |= basic_conv(f"{name}.branch3x3dbl_2", 64, 96, 3)
        spec |= basic_conv(f"{name}.branch3x3dbl_3", 96, 96, 3)
        spec |= basic_conv(f"{name}.branch_pool", cin, pool, 1)
    spec |= basic_conv("Mixed_6a.branch3x3", 288, 384, 3)
    spec |= basic_conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    spec |= basic_conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    spec |= basic_conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        spec |= basic_conv(f"{name}.branch1x1", 768, 192, 1)
        spec |= basic_conv(f"{name}.branch7x7_1", 768, c7, 1)
        spec |= basic_conv(f"{name}.branch7x7_2", c7, c7, 1, 7)
        spec |= basic_conv(f"{name}.branch7x7_3", c7, 192, 7, 1)
        spec |= basic_conv(f"{name}.branch7x7dbl_1", 768, c7, 1)
        spec |= basic_conv(f"{name}.branch7x7dbl_2", c7, c7, 7, 1)
        spec |= basic_conv(f"{name}.branch7x7dbl_3", c7, c7, 1, 7)
        spec |= basic_conv(f"{name}.branch7x7dbl_4", c7, c7, 7, 1)
        spec |= basic_conv(f"{name}.branch7x7dbl_5", c7, 192, 1, 7)
        spec |= basic_conv(f"{name}.branch_pool", 768, 192, 1)
    spec |= basic_conv("Mixed_7a.branch3x3_1", 768, 192, 1)
    spec |= basic_conv("Mixed_7a.branch3x3_2", 192, 320, 3)
    spec |= basic_conv("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    spec |= basic_conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    spec |= basic_conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    spec |= basic_conv("Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        spec |= basic_conv(f"{name}.branch1x1", cin, 320, 1)
        spec |= basic_conv(f"{name}.branch3x3_1", cin, 384, 1)
        spec |= basic_conv(f"{name}.branch3x3_2a", 384, 384, 1, 3)
        spec |= basic_conv(f"{name}.branch3x3_2b", 384, 384, 3, 1)
        spec |= basic_conv(f"{name}.branch3x3dbl_1", cin, 448, 1)
        spec |= basic_conv(f"{name}.branch3x3dbl_2", 448, 384, 3)
        spec |= basic_conv(f"{name}.branch3x3dbl_3a", 384, 384, 1, 3)
        spec |= basic_conv(f"{name}.branch3x3dbl_3b", 384, 384, 3, 1)
        spec |= basic_conv(f"{name}.branch_pool", cin, 192, 1)
    spec["fc.weight"] = (1008, 2048)
    spec["fc.bias"] = (1008,)
    return spec


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors with the published names and shapes, scaled to keep activations moderate."""
    rs = np.random.RandomState(seed)
    tensors = {}
    for name, shape in published_state_dict_shapes().items():
        if name.endswith("conv.weight") or name == "fc.weight":
            fan_in = int(np.prod(shape[1:]))
            value = rs.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif name.endswith("running_var"):
            value = rs.uniform(0.5, 1.5, shape)
        elif name.endswith("bn.weight"):
            value = rs.uniform(0.5, 1.5, shape)
        else:  # biases and running means
            value = rs.normal(0, 0.1, shape)
        tensors[name] = value.astype(np.float32)
    tensors["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0, np.int64)  # newer torch adds it
    return tensors


@pytest.fixture(scope="module")
def random_weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_inception.npz"
    tensors = random_state_dict()
    np.savez(path, **tensors)
    return path, tensors


def test_variables_match_the_published_state_dict():
    spec = published_state_dict_shapes()
    mapping = inception.torch_name_map()
    assert set(mapping) == set(spec)
    abstract = inception.abstract_variables()
    for name, (path, conversion) in mapping.items():
        leaf = abstract
        for key in path:
            leaf = leaf[key]
        expected = inception.convert(np.zeros(spec[name]), conversion).shape
        assert leaf.shape == expected, name
    total = sum(int(np.prod(shape)) for shape in spec.values())
    assert total == sum(x.size for x in jax.tree.leaves(abstract))


def test_loader_places_every_tensor(random_weights_file):
    path, tensors = random_weights_file
    variables = inception.load_weights(path)
    kernel = variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
    weight = tensors["Mixed_6b.branch7x7_2.conv.weight"]  # (out, in, 1, 7)
    assert kernel.shape == (1, 7, 128, 128)
    np.testing.assert_array_equal(kernel[0, 5, 3, 9], weight[9, 3, 0, 5])
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], tensors["fc.weight"].T)
    np.testing.assert_array_equal(
        variables["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
        tensors["Mixed_7c.branch_pool.bn.running_var"],
    )
    np.testing.assert_array_equal(
        variables["params"]["Conv2d_1a_3x3"]["bn"]["scale"], tensors["Conv2d_1a_3x3.bn.weight"]
    )


def test_loader_reports_wrong_files(tmp_path, random_weights_file):
    _, tensors = random_weights_file
    with pytest.raises(inception.InceptionWeightsError, match="not found"):
        inception.load_weights(tmp_path / "absent.npz")
    pth = tmp_path / "weights.pth"
    pth.write_bytes(b"torch")
    with pytest.raises(inception.InceptionWeightsError, match=r"convert it to \.npz"):
        inception.load_weights(pth)
    broken = dict(tensors)
    del broken["Mixed_5b.branch1x1.conv.weight"]
    broken["Mixed_5c.branch_pool.conv.weight"] = np.zeros((64, 288, 1, 1), np.float32)
    broken["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)
    np.savez(tmp_path / "broken.npz", **broken)
    with pytest.raises(inception.InceptionWeightsError) as error:
        inception.load_weights(tmp_path / "broken.npz")
    message = str(error.value)
    assert "1 missing (Mixed_5b.branch1x1.conv.weight)" in message
    assert "1 unexpected (AuxLogits.fc.weight)" in message
    assert "1 wrong shape (Mixed_5c.branch_pool.conv.weight" in message


def test_basic_conv_matches_torch_layout_convolution():
    """A (1, 7) conv with padding (0, 3) computed from the OIHW weight in NCHW, as torch does."""
    rs = np.random.RandomState(1)
    x = rs.normal(size=(2, 9, 11, 5)).astype(np.float32)
    weight = rs.normal(size=(6, 5, 1, 7)).astype(np.float32)
    gamma, beta = rs.uniform(0.5, 1.5, 6), rs.normal(size=6)
    mean, var = rs.normal(size=6), rs.uniform(0.5, 1.5, 6)
    module = inception.BasicConv(6, (1, 7), padding=(0, 3))
    variables = {
        "params": {
            "conv": {"kernel": inception.convert(weight, "conv")},
            "bn": {"scale": gamma, "bias": beta},
        },
        "batch_stats": {"bn": {"mean": mean, "var": var}},
    }
    ours = module.apply(variables, x)
    conv = jax.lax.conv_general_dilated(
        np.transpose(x, (0, 3, 1, 2)),
        weight,
        (1, 1),
        ((0, 0), (3, 3)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=jax.lax.Precision.HIGHEST,
    )
    scale = (gamma / np.sqrt(var + 1e-3))[None, :, None, None]
    expected = np.maximum((conv - mean[None, :, None, None]) * scale + beta[None, :, None, None], 0)
    np.testing.assert_allclose(ours, np.transpose(expected, (0, 2, 3, 1)), rtol=1e-4, atol=1e-4)


def test_average_pool_does_not_count_padding():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    pooled = np.asarray(inception.avg_pool_3x3_same(jnp.asarray(x)))[0, :, :, 0]
    assert pooled[0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))  # 4 real pixels, not 9
    assert pooled[1, 1] == pytest.approx(np.mean(x[0, :3, :3, 0]))
    assert pooled[0, 2] == pytest.approx(np.mean([1, 2, 3, 5, 6, 7]))
    maxed = np.asarray(inception.max_pool_3x3_same(jnp.asarray(x - 100)))[0, :, :, 0]
    assert maxed[0, 0] == 5 - 100  # padding never wins, even for negative inputs


def test_bilinear_resize_matches_pytorch_align_corners_false():
    # F.interpolate(torch.tensor([[[0., 1.]]]), size=4, mode='linear', align_corners=False)
    np.testing.assert_allclose(
        inception.bilinear_matrix(2, 4) @ [0.0, 1.0], [0.0, 0.25, 0.75, 1.0], atol=1e-12
    )
    # ... and size=2 from [0, 1, 2, 3]: [0.5, 2.5] (no antialiasing).
    np.testing.assert_allclose(inception.bilinear_matrix(4, 2) @ [0, 1, 2, 3], [0.5, 2.5])
    for size in (28, 32, 64, 299, 512):
        matrix = inception.bilinear_matrix(size, 299)
        np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(inception.bilinear_matrix(299, 299), np.eye(299))
    image = np.random.RandomState(2).uniform(size=(1, 28, 28, 1)).astype(np.float32)
    resized = np.asarray(inception.resize_bilinear(jnp.asarray(image)))
    # Direct per-pixel formula for one output pixel.
    scale = 28 / 299
    src_y, src_x = max((100 + 0.5) * scale - 0.5, 0), max((7 + 0.5) * scale - 0.5, 0)
    y0, x0 = int(src_y), int(src_x)
    ly, lx = src_y - y0, src_x - x0
    expected = (1 - ly) * ((1 - lx) * image[0, y0, x0, 0] + lx * image[0, y0, x0 + 1, 0]) + ly * (
        (1 - lx) * image[0, y0 + 1, x0, 0] + lx * image[0, y0 + 1, x0 + 1, 0]
    )
    assert resized.shape == (1, 299, 299, 1)
    assert resized[0, 100, 7, 0] == pytest.approx(expected, rel=1e-5)


def test_preprocess_repeats_grey_and_scales():
    grey = jnp.full((1, 5, 5, 1), 0.25)
    out = inception.preprocess(grey)
    assert out.shape == (1, 299, 299, 3)
    np.testing.assert_allclose(out, -0.5, atol=1e-6)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        inception.preprocess(jnp.zeros((1, 5, 5, 2)))


@pytest.mark.slow
def test_forward_pass_on_random_weights(random_weights_file):
    path, _ = random_weights_file
    variables = inception.load_weights(path)
    images = np.random.RandomState(3).uniform(size=(2, 28, 28, 1)).astype(np.float32)
    images = np.round(images * 255) / 255  # on the 8-bit grid: extraction's quantisation is a no-op
    outputs = jax.jit(
        lambda v, x: inception.FIDInceptionV3(intermediates=True).apply(v, inception.preprocess(x))
    )(variables, images)
    assert outputs["block0"].shape == (2, 73, 73, 64)
    assert outputs["block1"].shape == (2, 35, 35, 192)
    assert outputs["block2"].shape == (2, 17, 17, 768)
    assert outputs["pool3"].shape == (2, 2048)
    assert outputs["logits"].shape == (2, 1008)
    np.testing.assert_allclose(
        outputs["logits_with_bias"] - outputs["logits"],
        np.broadcast_to(variables["params"]["fc"]["bias"], (2, 1008)),
        rtol=1e-4,
        atol=1e-4,
    )
    assert np.all(np.isfinite(outputs["pool3"])) and np.all(np.asarray(outputs["pool3"]) >= 0)
    net = features.inception_feature_net(path, batch_size=2)
    extracted = net.extract_batch(images)
    np.testing.assert_allclose(extracted.features, outputs["pool3"], rtol=2e-4, atol=1e-5)
    assert net.protocol()["feature_net"] == "inception_v3_tf_fid"
    assert len(net.weights_hash) == 64


@pytest.mark.slow
def test_parity_with_pytorch_fid_on_the_published_weights():
    """Runs where the real weights and torch + pytorch-fid are installed: set
    GAN_VAE_JAX_INCEPTION_WEIGHTS to the converted .npz and GAN_VAE_JAX_INCEPTION_PTH to the .pth."""
    npz, pth = os.environ.get(WEIGHTS_ENV_VAR, ""), os.environ.get(PTH_ENV_VAR, "")
    if not (os.path.isfile(npz) and os.path.isfile(pth)):
        pytest.skip(f"set {WEIGHTS_ENV_VAR} (.npz) and {PTH_ENV_VAR} (.pth) to the real weights")
    torch = pytest.importorskip("torch")
    pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
    pytorch_fid_inception.load_state_dict_from_url = lambda *args, **kwargs: torch.load(
        pth, map_location="cpu"
    )
    model = pytorch_fid_inception.InceptionV3([3]).eval()
    images = np.random.RandomState(4).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    images = np.round(images * 255) / 255
    with torch.no_grad():
        expected = model(torch.from_numpy(np.transpose(images, (0, 3, 1, 2))))[0]
    expected = expected.numpy().reshape(4, 2048)
    ours = features.inception_feature_net(npz, batch_size=4).extract_batch(images).features
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-4)
