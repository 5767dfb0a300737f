"""Class-conditional metrics: does G draw the class it is asked for, and how well within each class?

* ``agreement``: the fraction of samples generated for class k that a classifier labels k, per class
  and overall (the "classification accuracy" of conditional GANs, e.g. Odena et al. 2017's ACGAN);
* ``intra_fid``: the FID computed within each class, between the class-k samples and the class-k real
  images, then averaged over classes (Miyato & Koyama 2018, cGANs with projection discriminator).

Both work on features and logits that are already extracted (any
:class:`~gan_lightning.metrics.features.FeatureExtractor`, e.g. the offline
:class:`~gan_lightning.metrics.digits.DigitFeatures`); the per-class FID is
:class:`~gan_lightning.metrics.scores.FeatureScores`' torchmetrics FID, the same one every FID here uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gan_lightning.errors import ConfigError
from gan_lightning.metrics.features import FeatureExtractor
from gan_lightning.metrics.scores import FeatureScores
from gan_lightning.module import GANModule
from gan_lightning.sample import generate


def agreement(predicted: Tensor, labels: Tensor, num_classes: int) -> dict[str, float | list[float]]:
    """{"agreement": fraction of ``predicted == labels`` over all samples, "per_class": that fraction
    among the samples of each requested label (nan for a class with no samples)}."""
    hit = (predicted == labels).double()
    per_class = [
        hit[labels == k].mean().item() if (labels == k).any() else float("nan") for k in range(num_classes)
    ]
    return {"agreement": hit.mean().item(), "per_class": per_class}


def intra_fid(
    real_features: Tensor, real_labels: Tensor, fake_features: Tensor, fake_labels: Tensor, num_classes: int
) -> dict[str, float | list[float]]:
    """{"intra_fid": mean over classes of the class-k FID, "per_class": the K FIDs}. Every class needs at
    least two real and two fake samples (a covariance)."""
    per_class = []
    for k in range(num_classes):
        real, fake = real_features[real_labels == k], fake_features[fake_labels == k]
        if len(real) < 2 or len(fake) < 2:
            raise ConfigError(
                f"intra-FID of class {k} needs at least 2 real and 2 fake samples, got {len(real)} and "
                f"{len(fake)}; sample more per class"
            )
        scores = FeatureScores(real_features.shape[1], num_classes, metrics=("fid",))
        scores.update_real(real)
        scores.update_fake(fake, torch.zeros(len(fake), num_classes))  # logits unused by "fid"
        per_class.append(scores.compute()["fid"])
    return {"intra_fid": sum(per_class) / num_classes, "per_class": per_class}


@torch.no_grad()
def _extract(extractor: FeatureExtractor, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    parts = [extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return torch.cat([f for f, _ in parts]), torch.cat([logits for _, logits in parts])


@torch.no_grad()
def conditional_scores(
    module: GANModule,
    extractor: FeatureExtractor,
    real_images: Tensor,
    real_labels: Tensor,
    per_class: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float | list[float]]:
    """Agreement and intra-FID of a class-conditional ``GANModule`` (its sampling G: the EMA one when
    present): ``per_class`` samples for each class from a ``seed``-ed latent stream, against
    ``real_images`` (floats in [-1, 1]) with ``real_labels``. Keys: agreement, agreement_per_class,
    intra_fid, intra_fid_per_class."""
    k = module.num_classes
    if not k:
        raise ConfigError("agreement and intra-FID need a class-conditional model (model.conditional: true)")
    labels = torch.arange(k).repeat_interleave(per_class)
    fake = generate(module, len(labels), seed=seed, batch_size=batch_size, labels=labels)
    fake_features, fake_logits = _extract(extractor, fake, batch_size)
    real_features, _ = _extract(extractor, real_images, batch_size)
    agree = agreement(fake_logits.argmax(1), labels, k)
    fid = intra_fid(real_features, real_labels, fake_features, labels, k)
    return {
        "agreement": agree["agreement"],
        "agreement_per_class": agree["per_class"],
        "intra_fid": fid["intra_fid"],
        "intra_fid_per_class": fid["per_class"],
    }
