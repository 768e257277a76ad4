"""Neural estimators on PyTorch via skorch, with the scikit-learn estimator contract.

They sit in the kinds' factory tables beside the scikit-learn ones: parameters in ``__init__``,
``fit``/``predict``/``predict_proba``, ``clone``-able, picklable. Every fit is seeded, runs on
a bounded number of CPU threads (``threads``; else, beside other pipelines, its share of the
cores, read again at each epoch; else ``OMP_NUM_THREADS``; else all cores), logs one
line per epoch, and stops early on a validation split carved out of the data it is given (the
best epoch's weights are kept). ``device: cuda`` uses a GPU when one is present.

torch and skorch are the optional ``neural`` extra, imported only when a network is fitted.
``consumes`` tells a kind what the network reads: raw pixels, raw text or the featurized matrix.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from modelmill.errors import SpecError
from modelmill.runtime.cores import thread_share, torch_threads

log = logging.getLogger("modelmill.train")

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def epochs_cap() -> int | None:
    """``MODELMILL_MAX_EPOCHS``: an upper bound on every network's epochs (quick smoke runs and
    tests); unset, the spec's ``max_epochs`` holds."""
    raw = os.environ.get("MODELMILL_MAX_EPOCHS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SpecError(f"MODELMILL_MAX_EPOCHS must be a positive whole number, not {raw!r}")
    return int(raw)


def _torch():
    try:
        import skorch  # noqa: F401 - the wrapper every network is fitted through
        import torch
    except ImportError as e:  # pragma: no cover - the extra is installed by make run/test
        raise SpecError(
            "neural estimators need the `neural` extra: pip install -e '.[neural]' (pins torch==2.13.0, the CPU build)"
        ) from e
    return torch


class TorchEstimator(BaseEstimator):
    """What every network shares: seed, device, threads, epochs, early stopping, optimiser."""

    consumes = "features"
    label = "net"
    #: skorch keeps torch modules and optimisers, which skops cannot store: a model holding one is a
    #: pickle (see :mod:`modelmill.registry.model_files`)
    holds_a_network = True

    def _setup(self, seed: int | None = None):
        """Seed, threads and device; called first in ``fit``, before the module is built, so its
        initial weights are seeded too."""
        torch = _torch()
        torch.set_num_threads(torch_threads(self.threads))
        seed = self.seed if seed is None else seed
        torch.manual_seed(seed)  # weights and batch order (the held-out rows have their own seed)
        device = self.device
        if device == "cuda" and not torch.cuda.is_available():
            log.warning("%s: device cuda asked for but none is present; training on the CPU", self.label)
            device = "cpu"
        self.device_ = device
        return torch

    def _net(self, net_cls, module, criterion, *, stratified: bool, scoring=None, seed: int | None = None, **kw):
        from skorch.callbacks import EarlyStopping, EpochScoring, GradientNormClipping, LRScheduler

        from modelmill.learn.kinds.torch_modules import EpochLog, HoldOut, ThreadShare, quiet

        torch = _torch()
        epochs = self.max_epochs
        if (cap := epochs_cap()) is not None and cap < epochs:
            log.info("%s: %d epochs at most (MODELMILL_MAX_EPOCHS), not %d", self.label, cap, epochs)
            epochs = cap
        callbacks = [
            ("log", EpochLog(self.label)),
            ("early_stopping", EarlyStopping(monitor="valid_loss", patience=self.patience, load_best=True, sink=quiet)),
            ("clip", GradientNormClipping(5.0)),
            ("lr", LRScheduler(policy="CosineAnnealingLR", T_max=epochs)),
        ]
        if scoring:
            callbacks.insert(0, ("score", EpochScoring(scoring[1], lower_is_better=False, name=scoring[0])))
        if self.threads is None and thread_share() is not None:
            callbacks.append(("threads", ThreadShare(self.label)))
        return net_cls(
            module, criterion=criterion, optimizer=torch.optim.AdamW, lr=self.lr, optimizer__weight_decay=self.weight_decay,
            max_epochs=epochs, batch_size=self.batch_size, train_split=HoldOut(self.valid_fraction, stratified, self.seed if seed is None else seed), callbacks=callbacks,
            iterator_train__shuffle=True, device=self.device_, verbose=0,
            callbacks__print_log__sink=quiet,  # not ``print``: Prefect's log_prints swaps it, and the net must pickle
            **kw,
        )  # fmt: skip

    def _fit_net(self, net, X, y):
        t0 = time.perf_counter()
        net.fit(X, y)
        h = net.history
        best = min(range(len(h)), key=lambda i: h[i]["valid_loss"])
        log.info(
            "%s: %d epochs in %.1f s, best valid_loss %.4f at epoch %d",
            self.label,
            len(h),
            time.perf_counter() - t0,
            h[best]["valid_loss"],
            best + 1,
        )
        self.net_ = net
        self.valid_index_ = net.train_split.valid_index
        self.history_ = [
            {k: v for k, v in row.items() if k in {"epoch", "train_loss", "valid_loss", "valid_acc", "valid_auc"}}
            for row in h
        ]
        return self


class _NeuralClassifier(ClassifierMixin, TorchEstimator):
    def _encode_fit(self, y):
        check_classification_targets(y)
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        return self.encoder_.transform(y).astype(np.int64)

    def _fit_classifier(self, module, X, y, seed: int | None = None):
        from skorch import NeuralNetClassifier

        torch = _torch()
        yi = self._encode_fit(y)
        scoring = ("valid_auc", "roc_auc") if len(self.classes_) == 2 else ("valid_acc", "accuracy")
        net = self._net(
            NeuralNetClassifier,
            module,
            torch.nn.CrossEntropyLoss,
            stratified=True,
            scoring=scoring,
            seed=seed,
            classes=list(range(len(self.classes_))),
        )
        return self._fit_net(net, X, yi)

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.net_.predict_proba(self._inputs(X)).astype(np.float64)

    def predict(self, X):
        best = self.predict_proba(X).argmax(1)
        return self.classes_[best]


class CNNClassifier(_NeuralClassifier):
    """A small residual CNN over images given as flattened pixels in [0, 255] (``colours`` values
    per pixel: 1 grey, 3 red/green/blue); with
    ``n_models`` > 1, that many networks (seeds ``seed``, ``seed + 1``, …, each with its own
    early-stopping rows) whose probabilities are averaged."""

    consumes = "pixels"
    label = "cnn"

    def __init__(
        self,
        height=28,
        width=28,
        channels=24,
        dropout=0.3,
        augment=True,
        max_shift=2.0,
        max_rotation=10.0,
        tta=True,
        n_models=1,
        max_epochs=60,
        lr=1e-3,
        batch_size=64,
        patience=20,
        weight_decay=1e-3,
        valid_fraction=0.15,
        seed=0,
        device="cpu",
        threads=None,
        colours=1,
    ):
        self.height, self.width, self.channels, self.dropout = height, width, channels, dropout
        self.colours = colours
        self.augment, self.max_shift, self.max_rotation, self.tta, self.n_models = (
            augment,
            max_shift,
            max_rotation,
            tta,
            n_models,
        )
        self.max_epochs, self.lr, self.batch_size, self.patience, self.weight_decay = (
            max_epochs,
            lr,
            batch_size,
            patience,
            weight_decay,
        )
        self.valid_fraction, self.seed, self.device, self.threads = valid_fraction, seed, device, threads

    def _inputs(self, X):
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        if X.shape[1] != self.height * self.width * self.colours:
            raise ValueError(
                f"each row is a {self.height} x {self.width} image ({self.height * self.width * self.colours} values); got {X.shape[1]} columns"
            )
        return X / 255.0

    def fit(self, X, y):
        from modelmill.learn.kinds.torch_modules import SmallResNet

        nets, histories = [], []
        for i in range(self.n_models):
            seed = self.seed + i
            if self.n_models > 1:
                log.info("cnn: network %d of %d (seed %d)", i + 1, self.n_models, seed)
            self._setup(seed)  # before the module is built: its initial weights are seeded too
            module = SmallResNet(
                self.height,
                self.width,
                self.channels,
                len(np.unique(y)),
                self.dropout,
                self.augment,
                self.max_shift,
                self.max_rotation,
                self.colours,
            )
            self._fit_classifier(module, self._inputs(X), y, seed=seed)
            nets.append(self.net_)
            histories.append(self.history_)
        self.nets_, self.net_, self.history_ = nets, nets[0], histories[0]
        return self

    def _proba(self, X):
        return np.mean([net.predict_proba(self._inputs(X)) for net in self.nets_], axis=0).astype(np.float64)

    def predict_proba(self, X):
        check_is_fitted(self)
        p = self._proba(X)
        if not self.tta:
            return p
        mirrored = np.asarray(X).reshape(len(X), self.height, self.width, -1)[:, :, ::-1].reshape(len(X), -1)
        return (p + self._proba(mirrored)) / 2  # test-time augmentation: the mirrored image too


class Vocabulary:
    """Lower-cased word/punctuation tokens -> ids (0 padding, 1 unknown), the first ``max_len``
    tokens of each text."""

    def __init__(self, texts, min_count: int, max_len: int):
        counts = Counter(t for s in texts for t in TOKEN.findall(s.lower()))
        self.ids = {t: i for i, t in enumerate(sorted(t for t, n in counts.items() if n >= min_count), start=2)}
        self.max_len = max_len

    def __len__(self):
        return len(self.ids) + 2

    def encode(self, texts) -> np.ndarray:
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, s in enumerate(texts):
            ids = [self.ids.get(t, 1) for t in TOKEN.findall(str(s).lower())[: self.max_len]]
            out[i, : len(ids)] = ids or [1]
        return out


class GRUTextClassifier(_NeuralClassifier):
    """A bidirectional GRU over learned word embeddings; takes raw texts."""

    consumes = "text"
    label = "gru"

    def __init__(
        self,
        embed_dim=128,
        hidden=128,
        dropout=0.3,
        max_len=64,
        min_count=1,
        max_epochs=20,
        lr=3e-3,
        batch_size=64,
        patience=3,
        weight_decay=1e-4,
        valid_fraction=0.1,
        seed=0,
        device="cpu",
        threads=None,
    ):
        self.embed_dim, self.hidden, self.dropout, self.max_len, self.min_count = (
            embed_dim,
            hidden,
            dropout,
            max_len,
            min_count,
        )
        self.max_epochs, self.lr, self.batch_size, self.patience, self.weight_decay = (
            max_epochs,
            lr,
            batch_size,
            patience,
            weight_decay,
        )
        self.valid_fraction, self.seed, self.device, self.threads = valid_fraction, seed, device, threads

    def _inputs(self, X):
        return self.vocab_.encode(np.asarray(X, dtype=object).ravel())

    def fit(self, X, y):
        from modelmill.learn.kinds.torch_modules import BiGRUText

        self._setup()
        texts = np.asarray(X, dtype=object).ravel()
        self.vocab_ = Vocabulary(texts, self.min_count, self.max_len)
        module = BiGRUText(len(self.vocab_), len(np.unique(y)), self.embed_dim, self.hidden, self.dropout)
        return self._fit_classifier(module, self._inputs(texts), y)


class MLPRegressor(RegressorMixin, TorchEstimator):
    """A fully connected network for a numeric target; validates on the last rows (time order),
    trains on a standardised target."""

    label = "mlp"

    def __init__(
        self,
        hidden=(64, 32),
        dropout=0.1,
        max_epochs=100,
        lr=1e-3,
        batch_size=256,
        patience=10,
        weight_decay=1e-3,
        valid_fraction=0.15,
        seed=0,
        device="cpu",
        threads=None,
    ):
        self.hidden, self.dropout = hidden, dropout
        self.max_epochs, self.lr, self.batch_size, self.patience, self.weight_decay = (
            max_epochs,
            lr,
            batch_size,
            patience,
            weight_decay,
        )
        self.valid_fraction, self.seed, self.device, self.threads = valid_fraction, seed, device, threads

    def fit(self, X, y):
        from skorch import NeuralNetRegressor

        from modelmill.learn.kinds.torch_modules import MLP

        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        if len(X) < 2:
            raise ValueError(
                f"MLPRegressor needs at least 2 samples (training and held-out rows); got n_samples = {len(X)}"
            )
        torch = self._setup()
        y = y.astype(np.float64)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std() or 1.0)
        target = ((y - self.y_mean_) / self.y_std_).astype(np.float32).reshape(-1, 1)
        module = MLP(X.shape[1], tuple(self.hidden), self.dropout)
        net = self._net(NeuralNetRegressor, module, torch.nn.MSELoss, stratified=False)
        return self._fit_net(net, X, target)

    def predict(self, X):
        check_is_fitted(self)
        out = self.net_.predict(validate_data(self, X, dtype=np.float32, reset=False)).ravel()
        return out.astype(np.float64) * self.y_std_ + self.y_mean_


def network(model):
    """The neural estimator inside a fitted model (a pipeline, a wrapper), or None."""
    for _ in range(5):
        if getattr(model, "holds_a_network", False) is True:  # TorchEstimator, and the ensemble that holds one
            return model
        if hasattr(model, "steps"):
            model = model.steps[-1][1]
        elif hasattr(model, "estimator_") or hasattr(model, "pipeline_"):
            model = getattr(model, "estimator_", None) or model.pipeline_
        else:
            return None
    return None


def training_curves(model, title: str):
    """Train/validation loss per epoch of the network inside ``model`` (a figure), or None."""
    from modelmill.learn.evaluation import figure

    net = network(model)
    history = getattr(net, "history_", None)
    if not history:
        return None
    fig, ax = figure(7, 4)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["valid_loss"] for h in history], label="validation loss")
    for key in ("valid_auc", "valid_acc"):
        if key in history[0]:
            twin = ax.twinx()
            twin.plot(epochs, [h[key] for h in history], color="tab:green", ls="--", label=key.replace("_", " "))
            twin.set_ylabel(key.replace("_", " "))
            twin.legend(loc="center right", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{title}: {net.label} training curves")
    fig.tight_layout()
    return fig
