"""``vae_jax.evaluation``: the IWAE estimate of log p(x) against a model whose marginal likelihood is
exact in closed form, and the bookkeeping of the evaluation (chunking, batching, keys, stderr)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import base
from experiments import data, optim
from vae_jax import evaluation
from vae_jax import family as vae_family
from vae_jax.defaults import default_model_config

# Probabilistic PCA as a VAE: p(z) = N(0, I_d), p(x | z) = N(W z + b, sigma^2 I_D). With no hidden
# layers the MLP decoder is exactly x_mean = z W + b and the encoder is linear-Gaussian too.
SHAPE = (4, 4, 1)
D, LATENT, SIGMA = 16, 3, 0.5
NUM_EXAMPLES = 40


def ppca_family():
    config = base.get_base_config()
    config.family = "vae"
    config.model = default_model_config(
        image_shape=SHAPE,
        latent_dim=LATENT,
        hidden_widths=(),
        likelihood="gaussian",
        gaussian_scale=SIGMA,
        output_bias_init="zeros",
    )
    config.optimizer = optim.default_optimizer_config()
    return vae_family.make(config)


@pytest.fixture(scope="module")
def ppca():
    """The model, test data drawn from it, its exact log p(x) (scipy), and the exact posterior."""
    rs = np.random.RandomState(0)
    # Orthogonal columns make the exact posterior covariance diagonal (a diagonal q can match it).
    w = np.linalg.qr(rs.normal(size=(D, LATENT)))[0] * np.array([2.0, 1.2, 0.7])  # (D, d)
    b = rs.normal(scale=0.3, size=D)
    z = rs.normal(size=(NUM_EXAMPLES, LATENT))
    x = z @ w.T + b + SIGMA * rs.normal(size=(NUM_EXAMPLES, D))
    exact = stats.multivariate_normal(b, w @ w.T + SIGMA**2 * np.eye(D)).logpdf(x)
    # Posterior: cov = (I + W^T W / s^2)^-1 (diagonal here), mean = cov W^T (x - b) / s^2.
    cov = np.linalg.inv(np.eye(LATENT) + w.T @ w / SIGMA**2)
    np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-12)
    gain = w @ cov / SIGMA**2  # (D, d): mean = (x - b) @ gain
    fam = ppca_family()
    params = jax.eval_shape(
        fam.model.init, jax.random.key(0), jnp.zeros((1, *SHAPE)), jax.random.key(1)
    )["params"]

    def make_params(encoder_gain, encoder_logvar):
        f32 = lambda a: jnp.asarray(a, jnp.float32)
        return {
            "encoder": {
                "mean": {"kernel": f32(encoder_gain), "bias": f32(-b @ encoder_gain)},
                "logvar": {"kernel": jnp.zeros((D, LATENT)), "bias": f32(encoder_logvar)},
            },
            "decoder": {
                "layers": {"Dense_0": {"kernel": f32(w.T), "bias": f32(b)}},
                "output_bias": {"bias": jnp.zeros(SHAPE)},
            },
        }

    exact_params = make_params(gain, np.log(np.diag(cov)))
    assert jax.tree.structure(exact_params) == jax.tree.structure(params)
    # A worse q: means shrunk by 30 %, variances inflated 3x (a clear ELBO gap).
    rough_params = make_params(0.7 * gain, np.log(3.0 * np.diag(cov)))
    source = data.ArraySource({"x": x.reshape(NUM_EXAMPLES, *SHAPE).astype(np.float32)}, "ppca")
    state = lambda params: SimpleNamespace(eval_params=params)
    return SimpleNamespace(
        fam=fam,
        source=source,
        exact=exact,
        exact_state=state(exact_params),
        rough=state(rough_params),
    )


def evaluate(ppca, state, k, **options):
    return evaluation.evaluation_metrics(
        ppca.fam, state, ppca.source, jax.random.key(42), {"iwae_k": k, "batch_size": 16, **options}
    )


def test_exact_posterior_gives_the_exact_marginal_likelihood(ppca):
    """With q = p(z | x), every importance weight equals p(x): the IWAE estimate is exact for any k,
    and the ELBO (KL(q || p(z | x)) = 0) equals log p(x) up to the Monte Carlo noise of its
    reconstruction term."""
    exact_nll = -np.mean(ppca.exact)
    for k in (1, 7):
        assert evaluate(ppca, ppca.exact_state, k)["nll_iwae"] == pytest.approx(exact_nll, abs=2e-3)
    assert -evaluate(ppca, ppca.exact_state, 2000)["elbo"] == pytest.approx(exact_nll, abs=0.02)


def test_iwae_approaches_the_exact_likelihood_as_k_grows_and_the_elbo_stays_below(ppca):
    """The claim behind every NLL this project reports: with an imperfect q, -ELBO > -log p(x), the
    IWAE estimate falls towards -log p(x) as k grows, and at k = 5000 it is within 0.02 nats per
    example (here the gap at k = 1 is about 5 nats)."""
    exact_nll = -np.mean(ppca.exact)
    nll = {k: evaluate(ppca, ppca.rough, k)["nll_iwae"] for k in (1, 10, 100, 1000, 5000)}
    elbo = evaluate(ppca, ppca.rough, 100)["elbo"]
    assert -elbo > exact_nll + 2.0  # a real gap to close
    assert nll[1] > nll[10] > nll[100] > nll[1000] > nll[5000] > exact_nll - 0.02
    assert nll[5000] - exact_nll < 0.02
    assert nll[1] - exact_nll > 50 * (nll[5000] - exact_nll)


def test_metrics_are_consistent_and_independent_of_batching_and_chunking(ppca):
    metrics = evaluate(ppca, ppca.rough, 50)
    assert set(metrics) == {
        "nll_iwae",
        "nll_iwae_stderr",
        "nll_iwae_k",
        "elbo",
        "elbo_stderr",
        "reconstruction",
        "kl",
        "bits_per_dim",
        "elbo_bits_per_dim",
        "num_examples",
    }
    assert metrics["nll_iwae_k"] == 50 and metrics["num_examples"] == NUM_EXAMPLES
    assert metrics["elbo"] == pytest.approx(-(metrics["reconstruction"] + metrics["kl"]))
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_iwae"] / (D * np.log(2)) + 8.0)
    # Another batch size (with padding: 40 = 3 * 13 + 1) and a chunk of 7 samples: the same draws.
    other = evaluate(ppca, ppca.rough, 50, batch_size=13, max_elements=13 * D * 7)
    for name in ("nll_iwae", "elbo", "reconstruction", "kl"):
        assert other[name] == pytest.approx(metrics[name], rel=1e-5)
    # The standard error over examples, from the per-example estimates.
    per_example = []
    for i in range(NUM_EXAMPLES):
        single = data.ArraySource(ppca.source[np.array([i])], "one")
        estimate, _, _ = evaluation.compiled_estimates(ppca.fam, 50, 50)(
            ppca.rough.eval_params,
            jnp.asarray(single[np.array([0])]["x"]),
            None,
            jax.random.key(42),
            jnp.uint32(i),
        )
        per_example.append(-float(estimate[0]))
    assert np.mean(per_example) == pytest.approx(metrics["nll_iwae"], rel=1e-5)
    expected_stderr = np.std(per_example, ddof=1) / np.sqrt(NUM_EXAMPLES)
    assert metrics["nll_iwae_stderr"] == pytest.approx(expected_stderr, rel=1e-4)
    first = evaluate(ppca, ppca.rough, 50, max_examples=5)
    assert first["num_examples"] == 5
    assert first["nll_iwae"] > 0


def test_chunk_size():
    assert evaluation.chunk_size(5000, 100, 784, 2**24) * 100 * 784 <= 2**24
    assert evaluation.chunk_size(5000, 100, 784, 1) == 1
    assert evaluation.chunk_size(10, 1, 1, 2**24) == 10
    assert evaluation.chunk_size(5000, 100, 784, 100 * 784 * 2000) == 1667  # 3 even chunks
