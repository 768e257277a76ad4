"""How a model's estimators are stored so that loading them cannot run code.

Models are skops files (``model.skops``) loaded against this module's allow-list, never against
the list a file carries: skops rebuilds each object from its type and state, and a type off the
list (``posix.system``, ``builtins.eval``, any class of another package) refuses the whole file
before anything in it is built. So a registry writer who holds the project's signing key can still
make a model score badly, but not make a load run code.

A model holding a PyTorch network (the CNN, the GRU and its TF-IDF ensemble, the MLP) is the
exception: skorch keeps torch modules and optimisers that skops cannot rebuild, so those models
are pickles, loaded only after their signed sha256 is checked (:mod:`modelmill.config.trust`), and
only for a pipeline whose candidates can hold a network. A pickle registered under any other
pipeline (a swapped model, or one saved by an older release) is refused at load.
"""

from __future__ import annotations

from pathlib import Path

from modelmill.errors import ModelIntegrityError

SKOPS, PICKLE = "skops", "cloudpickle"

#: Types beyond skops' own defaults (scikit-learn's estimators, numpy, scipy) a modelmill model
#: may hold: the project's estimators and encoders (plain arrays and parameters, no callables)
#: and the scikit-learn internals they keep (tree predictors, the scorer a tuned threshold was
#: chosen with, its CV splitter and metadata routing). Nothing here runs code when rebuilt.
ALLOWED: frozenset[str] = frozenset(
    {
        # the project's own estimators (tests/test_estimator_checks.py lists them all)
        "modelmill.learn.kinds.encoders.CategoryEncoder",
        "modelmill.learn.kinds.encoders.RawRows",
        "modelmill.learn.kinds.estimators.HistGradientBoosting",
        "modelmill.learn.kinds.tabular.Calibrated",
        "modelmill.learn.kinds.regression.Conformal",
        "modelmill.learn.kinds.tabular._Isotonic",
        "modelmill.learn.kinds.tabular._Sigmoid",
        "modelmill.learn.kinds.forecasting.PriceFeatures",
        "modelmill.learn.kinds.image.CalibratedSVC",
        "modelmill.learn.kinds.image.MirrorAugmented",
        "modelmill.learn.kinds.image.ImageFeatures",
        "modelmill.learn.kinds.recommendation.Popularity",
        "modelmill.learn.kinds.recommendation.ItemKNN",
        "modelmill.learn.kinds.recommendation.BPR",
        "modelmill.learn.kinds.recommendation.ALS",
        "modelmill.learn.kinds.recommendation.ContentBased",
        "modelmill.learn.kinds.recommendation.Hybrid",
        "modelmill.learn.kinds.recommendation.History",
        "modelmill.learn.kinds.text_features.TextColumn",
        "modelmill.learn.kinds.sentences.SentenceEncoder",
        "modelmill.learn.kinds.sentences.SentenceTfidfClassifier",
        "modelmill.learn.kinds.sentences.FineTunedSentenceClassifier",
        # scikit-learn internals its default list leaves out (trees' Cython state, the splitters and
        # scorers a tuned threshold or calibration keeps, metadata routing)
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "numpy.dtype",
        "scipy.sparse._csr.csr_matrix",
        "sklearn.metrics._scorer._CurveScorer",
        "sklearn.metrics._scorer._Scorer",
        "sklearn.metrics._classification.balanced_accuracy_score",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.model_selection._split.PredefinedSplit",
        "sklearn.model_selection._split.KFold",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
        "sklearn.utils._metadata_requests.MetadataRequest",
        "sklearn.utils._metadata_requests.MethodMetadataRequest",
        # the cost a tuned threshold minimised
        "modelmill.learn.kinds.tabular.negative_cost",
    }
)


def off_the_list(types) -> list[str]:
    return sorted(set(types) - ALLOWED)


def skops_types(model) -> tuple[list[str], list[str]]:
    """The types a skops file of ``model`` would hold beyond skops' defaults, and those of them off
    the allow-list (a model skops cannot write at all, such as a torch network's modules, has the
    reason as its one type off the list)."""
    import skops.io

    try:
        found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as e:  # skops raises TypeError/ValueError/NotImplementedError for what it cannot store
        return [], [f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"]
    return sorted(found), off_the_list(found)


def load_skops(path: Path, what: str):
    """A model's skops file rebuilt against :data:`ALLOWED` only; any other type refuses the file
    (one line naming the types) before a single object is built."""
    import skops.io

    try:
        found = skops.io.get_untrusted_types(file=path)
    except Exception as e:
        raise ModelIntegrityError(f"{what}: its skops file cannot be read ({str(e).splitlines()[0][:200]})") from e
    outside = off_the_list(found)
    if outside:
        raise ModelIntegrityError(
            f"{what} holds types outside modelmill's allow-list ({', '.join(outside[:5])}): refusing to load it"
        )
    return skops.io.load(path, trusted=sorted(found))
