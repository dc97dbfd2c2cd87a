"""Sample-quality evaluation: feature networks, metrics, cached real features, the real-data floor.

- ``features``: the feature-network interface and registry (``build_feature_net``); batched, jitted
  extraction sharded over the data mesh.
- ``classifier``: the MNIST-format domain classifier (``configs/classifier_mnist.py``), trained on
  first use into the cache, never downloaded.
- ``inception``: the TF-FID InceptionV3 in Flax and the loader of its published weights (``.npz``).
- ``metrics``: FID, KID, Inception/classifier score, precision/recall, density/coverage, label
  accuracy and intra-class FID; numpy, float64.
- ``reference``: real features cached per (dataset, split, examples, feature network).
- ``evaluator``: one evaluation of a model state with its protocol; ``in_training`` runs it in the
  train loop; ``best`` keeps the best checkpoint by a metric.
- ``cache``: where all of that is kept (``$GAN_VAE_JAX_CACHE`` or ``~/.cache/gan_vae_jax``).

The command is ``python -m experiments.evaluate`` (see that module).
"""
