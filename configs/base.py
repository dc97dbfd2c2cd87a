"""Keys every experiment has; each experiment's config starts from ``get_base_config()``.

Tests, tools and later features rely on these names: ``seed``, ``data_seed``, ``num_train_steps``, ``batch_size``
(global), ``log_every_steps``, ``eval_every_steps``, ``checkpoint_every_steps``, ``data`` (with at least
``name`` and ``dir``), ``model``, ``optimizer`` and ``evaluation`` (sample-quality metrics in training
and the best checkpoint; see ``get_evaluation_config``).
"""

import ml_collections
from ml_collections import config_dict


def get_data_config(**overrides) -> ml_collections.ConfigDict:
    """A data config; see ``experiments.data`` for the names and the layout they produce."""
    config = ml_collections.ConfigDict(
        dict(
            name="shapes",  # mnist | fashion_mnist | kmnist | binarized_mnist | ring2d | grid2d | shapes | tfds:NAME
            dir="",  # empty: $GAN_VAE_JAX_DATA/<name>, then ../shared/data/<name>
            train_split="train",
            eval_split="test",
            binarize="none",  # none | dynamic (Bernoulli draw per example and step)
            image_size=28,  # embedded shapes only
            data_seed=0,  # embedded data only: which procedural dataset
            on_device=False,  # keep the train split on the devices, gather batches there (GPU/TPU)
        )
    )
    config.update(overrides)
    return config


def get_evaluation_config(**overrides) -> ml_collections.ConfigDict:
    """Sample-quality metrics during training and which checkpoint to keep as the best.

    See ``experiments.evaluation``; ``python -m experiments.evaluate`` reads ``feature_net``,
    ``inception_weights`` and ``cache_dir`` from here too (its flags override them).
    """
    config = ml_collections.ConfigDict(
        dict(
            metrics="",  # in training, every eval_every_steps: e.g. 'fid,kid,is,pr' ('' = none)
            num_samples=2000,  # samples per in-training eval (the command defaults to 10000)
            sample_batch_size=500,
            reference_split="",  # '' = data.eval_split
            # auto | classifier | classifier_local | inception (auto: classifier for MNIST-format
            # data; classifier_local: one trained on this machine, not the shipped MNIST weights)
            feature_net="auto",
            inception_weights="",  # .npz of the TF-FID InceptionV3 weights (docs/evaluation.md)
            feature_batch_size=0,  # 0 = the feature net's default; results do not depend on it
            force_fid=False,  # compute FID with fewer samples than twice the feature dimension
            best_metric="",  # keep the best checkpoint in checkpoints_best/ by this eval metric
            best_mode="min",  # min | max
            cache_dir="",  # '' = $GAN_VAE_JAX_CACHE, else ~/.cache/gan_vae_jax
        )
    )
    config.update(overrides)
    return config


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = "gan"  # gan | vae
    config.seed = 0  # initialisation and every random draw of the model
    # The order of the train examples (and dynamic binarisation); None = seed. K runs with different
    # seeds and one data_seed see the same data stream.
    config.data_seed = config_dict.placeholder(int)
    # K > 1: train seeds seed ... seed+K-1 on data_seed's one data stream as one compiled step, each
    # replica in its own workdir WORKDIR/replica_<i> (experiments.replicas).
    config.num_replicas = 1
    # How the step runs K replicas: vmap | unroll | auto (unroll on CPU for a model with
    # convolutions, a state leaf of rank >= 4; vmap otherwise).
    config.replica_loop = "auto"
    config.num_train_steps = 1000
    config.batch_size = 64  # global, over all devices and processes
    # The device mesh (experiments.sharding): data x fsdp = the device count; data=-1 takes all
    # that fsdp leaves. fsdp > 1 splits each large parameter and optimiser-state leaf over fsdp
    # devices (about 1/fsdp of the state's memory per device); the numbers do not change.
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    config.eval_batch_size = 500
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.checkpoints_to_keep = 3
    config.num_grid_examples = 64
    # XLA:CPU only: eigen (multi-threaded convolutions, 1.5x faster DCGAN step on 2 cores) | default
    config.cpu_convolutions = "eigen"
    # XLA:CPU only: reuse (glibc keeps freed blocks in the heap: no page faults for each step's
    # buffers, 1.3x faster DCGAN step) | default
    config.host_memory = "reuse"
    # float32 | bfloat16: the dtype the networks compute in (a family's to honour; the GAN and VAE
    # families keep parameters, optimiser state, losses and batch-norm statistics in float32)
    config.compute_dtype = "float32"
    config.data = get_data_config()
    config.model = ml_collections.ConfigDict()
    config.optimizer = ml_collections.ConfigDict()
    config.evaluation = get_evaluation_config()
    return config
