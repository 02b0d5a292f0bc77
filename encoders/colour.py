"""The colour cell: a colour histogram of the image projected to the local-feature width.

Deep features are trained (and augmented) to be colour-tolerant, so items that differ
only in colour — a product in five colourways, an emoji in five skin tones — sit almost on
top of each other in the embedding. The colour cell keeps that evidence for the scorer:
a joint RGB histogram of the non-background pixels (computed inside the image model from
its own input, so ONNX and TensorRT engines carry it), square-rooted (Hellinger), then a
linear projection fitted on train items by linear discriminant analysis with identities
as classes: directions where drawings of one identity agree and identities differ, which
discounts a vendor's palette and keeps what tells colourways apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmsearch.encoders.heads import LinearHead
from mmsearch.encoders.preprocess import ImageInput, ImageSpec, image_to_array, load_rgb

BINS = 12  # per channel, 1,728 joint bins; 8 per channel measured 1-2 points R@1 lower
HISTOGRAM_DIM = BINS**3
POOL = 4  # histogram over 4x4-averaged pixels: a 224 input counts 56 x 56 pixels
# pixels whose every channel is above this count as background (images arrive composited
# on white: transparent PNGs, product shots)
BACKGROUND = 0.96
# ColourHistogram feeds the model's colour cell: TorchLinearHead(colour head), unit length,
# appended as the last local row (encoders.modules.ImageEmbedder)


class ColourHistogram(nn.Module):
    """Normalised pixel_values (B, 3, H, W) -> (B, BINS**3) square-rooted histogram that
    sums to 1 before the root. Plain pooling and matmuls, so it exports to any ONNX runtime."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None])
        self.register_buffer("edges", torch.arange(BINS, dtype=torch.float32))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        rgb = F.avg_pool2d(pixel_values * self.std + self.mean, POOL).clamp(0, 1)
        rgb = rgb.flatten(2).transpose(1, 2)  # (B, P, 3)
        foreground = (rgb.min(-1).values <= BACKGROUND).float()  # (B, P)
        level = (rgb * BINS).floor().clamp(max=BINS - 1)
        onehot = (level[..., None] == self.edges).float()  # (B, P, 3, BINS)
        red, green, blue = onehot.unbind(2)
        red_green = (red[..., :, None] * green[..., None, :]).flatten(2)  # (B, P, BINS^2)
        # the background mask goes on the narrow factor: BINS wide, not BINS^2
        blue = blue * foreground[..., None]
        counts = (red_green.transpose(1, 2) @ blue).flatten(1)  # (B, BINS^3)
        return (counts / counts.sum(-1, keepdim=True).clamp(min=1.0)).sqrt()


def fit_colour_head(histograms: np.ndarray, labels: list[str] | np.ndarray, dim: int,
                    shrinkage: float = 0.1) -> LinearHead:
    """LDA projection (identities as classes) of histograms to dim, as a LinearHead.

    Within-identity scatter is shrunk toward its mean variance so the bins no train item
    uses do not dominate; directions come from the generalised eigenproblem
    between-scatter v = lambda within-scatter v, largest first."""
    features = np.asarray(histograms, np.float64)
    labels = np.asarray(labels)
    classes, index = np.unique(labels, return_inverse=True)
    if len(classes) <= dim:
        raise ValueError(f"colour head: {len(classes)} identities cannot give {dim} "
                         "discriminant directions; use more train identities")
    overall = features.mean(0)
    class_means = np.zeros((len(classes), features.shape[1]))
    np.add.at(class_means, index, features)
    class_means /= np.bincount(index)[:, None]
    within = features - class_means[index]
    scatter_within = within.T @ within / len(features)
    centred = features - overall
    scatter_between = centred.T @ centred / len(features) - scatter_within
    scatter_within = ((1 - shrinkage) * scatter_within + shrinkage
                      * np.trace(scatter_within) / len(scatter_within)
                      * np.eye(len(scatter_within)))
    # whiten by the within scatter, then the ordinary symmetric eigenproblem
    values, vectors = np.linalg.eigh(scatter_within)
    whiten = vectors / np.sqrt(np.maximum(values, 1e-12))
    between_white = whiten.T @ scatter_between @ whiten
    values, vectors = np.linalg.eigh((between_white + between_white.T) / 2)
    directions = whiten @ vectors[:, ::-1][:, :dim]
    return LinearHead(overall.astype(np.float32), directions.astype(np.float32))


def image_histograms(images: Sequence[ImageInput], mean: tuple[float, ...],
                     std: tuple[float, ...], size: int, batch_size: int = 64) -> np.ndarray:
    """(N, BINS**3) histograms of images, preprocessed exactly as the image model's input,
    so a head fitted on them sees what the exported model computes."""
    spec = ImageSpec(size, mean, std)
    histogram = ColourHistogram(mean, std)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            pixels = np.stack([image_to_array(load_rgb(image, f"image {start + i}"), spec)
                               for i, image in enumerate(images[start : start + batch_size])])
            out.append(histogram(torch.from_numpy(pixels)).numpy())
    return np.concatenate(out) if out else np.zeros((0, HISTOGRAM_DIM), np.float32)
