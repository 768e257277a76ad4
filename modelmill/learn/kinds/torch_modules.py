"""The PyTorch networks and skorch helpers behind the neural estimators (``modelmill.learn.kinds.neural``).

Imported only when a neural estimator is fitted or unpickled, never at ``import modelmill``: torch
is the optional ``neural`` extra.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import Subset

from modelmill.runtime.cores import follow_share

log = logging.getLogger("modelmill.train")


def quiet(*_):
    """A sink for skorch messages the epoch log already carries."""


class EpochLog(Callback):
    """One log line per epoch: losses, validation score, seconds, * on a new best."""

    def __init__(self, label: str):
        self.label = label

    def on_epoch_end(self, net, **kwargs):
        h = net.history[-1]
        extra = "".join(f"{k} {h[k]:.4f} " for k in ("valid_acc", "valid_auc") if k in h)
        best = " *" if h.get("valid_loss_best") else ""
        log.info(
            "%s epoch %d/%d: train_loss %.4f valid_loss %.4f %s(%.1f s)%s",
            self.label,
            h["epoch"],
            net.max_epochs,
            h["train_loss"],
            h["valid_loss"],
            extra,
            h["dur"],
            best,
        )


class ThreadShare(Callback):
    """At each epoch, this process's share of cores shared with other pipelines
    (``modelmill.runtime.cores``): more threads once the pipelines beside it have finished."""

    def __init__(self, label: str):
        self.label = label

    def on_epoch_begin(self, net, **kwargs):
        follow_share(torch, self.label, f"epoch {len(net.history)}")


class HoldOut:
    """skorch ``train_split`` holding out ``fraction`` of the rows for early stopping: a seeded
    stratified sample for classifiers, the last rows (time order) otherwise. The held-out row
    numbers are kept in ``valid_index``."""

    def __init__(self, fraction: float, stratified: bool, seed: int):
        self.fraction, self.stratified, self.seed = fraction, stratified, seed

    def __call__(self, dataset, y=None, **_):
        from sklearn.model_selection import StratifiedShuffleSplit

        n = len(dataset)
        if self.stratified:
            tr, va = next(
                StratifiedShuffleSplit(1, test_size=self.fraction, random_state=self.seed).split(
                    np.zeros(n), np.asarray(y)
                )
            )
        else:
            cut = n - max(1, round(n * self.fraction))
            tr, va = np.arange(cut), np.arange(cut, n)
        self.valid_index = va
        return Subset(dataset, tr), Subset(dataset, va)


def augment(x: torch.Tensor, max_shift: float, max_rotation: float) -> torch.Tensor:
    """Random left-right flips, shifts of up to ``max_shift`` pixels and rotations of up to
    ``max_rotation`` degrees, per image of a (N, 1, H, W) batch (torch ops only)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(max_rotation)
    shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * max_shift * 2 / torch.tensor([w, h], device=x.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Three stages of residual blocks (c, 2c, 4c channels) over the image's ``colours`` (1 grey,
    3 red/green/blue), global average pooling and a linear head. Takes flattened images (height x
    width x colours) in [0, 1]; augments in training."""

    def __init__(
        self,
        height=28,
        width=28,
        channels=32,
        n_classes=2,
        dropout=0.2,
        augment=True,
        max_shift=2.0,
        max_rotation=10.0,
        colours=1,
    ):
        super().__init__()
        self.height, self.width, self.colours = height, width, colours
        self.augment, self.max_shift, self.max_rotation = augment, max_shift, max_rotation
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(colours, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.stages = nn.Sequential(
            ResidualBlock(c, c),
            ResidualBlock(c, c),
            ResidualBlock(c, 2 * c, 2),
            ResidualBlock(2 * c, 2 * c),
            ResidualBlock(2 * c, 4 * c, 2),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * c, n_classes)
        )

    def forward(self, X):
        x = X.view(-1, self.height, self.width, self.colours).permute(0, 3, 1, 2)
        if self.training and self.augment:
            x = augment(x, self.max_shift, self.max_rotation)
        return self.head(self.stages(self.stem((x - 0.5) / 0.25)))


class BiGRUText(nn.Module):
    """Learned word embeddings, a bidirectional GRU, mean+max pooling over the real tokens, and
    a linear head. Takes (N, L) token ids with 0 as padding."""

    def __init__(self, vocab_size: int, n_classes: int, embed_dim=128, hidden=128, dropout=0.3):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, n_classes)

    def forward(self, X):
        mask = X != 0
        lengths = mask.sum(1).clamp(min=1)
        packed = pack_padded_sequence(self.drop(self.embed(X)), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=X.shape[1])
        m = mask.unsqueeze(-1)
        mean = (out * m).sum(1) / lengths.unsqueeze(1)
        top = out.masked_fill(~m, -1e4).max(1).values
        return self.head(self.drop(torch.cat([mean, top], 1)))


class MLP(nn.Module):
    """Fully connected layers with ReLU and dropout; one output (a regression)."""

    def __init__(self, n_in: int, hidden=(64, 32), dropout=0.1):
        super().__init__()
        layers, width = [], n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, X):
        return self.net(X)
