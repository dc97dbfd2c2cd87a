"""Class-conditional GAN on MNIST with a projection discriminator (Miyato & Koyama 2018):
``dcgan_mnist`` (networks, non-saturating loss, Adam, EMA of G, 6000 steps) with conditional batch
norm in the generator (a per-class scale and shift in each BN) and the projection ⟨embed(y), h⟩
added to D's logit.

Why not ``hinge_sn_mnist``'s spectrally normalised D: measured at 3000 steps (seed 0), the hinge +
SN version gave 68-73% class accuracy and blurred 2s, 4s and 8s, while this one's samples were
already clean digits of the requested classes; at 6000 steps with the EMA, hinge + SN reached FID
5.55 and 91.4% accuracy against this config's 2.30 and 98.9%.

Sample a class: ``python -m experiments.sample --workdir=runs/cgan_mnist --num=1000
--labels=7 --out=sevens.npz``.

Command:
  python -m experiments.main --config=configs/cgan_mnist.py --workdir=runs/cgan_mnist
Time on 2 CPU cores: 22 minutes (1314 s pinned to one core while another run used the other).
On a CPU with glibc, ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m experiments.main ...``
makes the step 90-103 → 80-84 ms: its 64.2 MB of temporaries are just more than
``config.host_memory`` can keep (19 000 → 90-230 page faults per step; docs/performance.md).
Expected result: measured with seed 0, 98.9% of 10 000 class-conditional samples (labels i mod 10)
classified as the requested digit by the domain classifier; FID 2.30, intra-class FID 5.04,
classifier score 9.79 (real data: 9.79), precision 0.71, recall 0.62 (floor FID 0.30).
"""

from configs import dcgan_mnist

NUM_CLASSES = 10


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.model.num_classes = NUM_CLASSES
    config.model.generator.conditioning = "cbn"
    config.model.discriminator.conditioning = "projection"
    return config
