"""Image classification from small images, grey or colour (BreastMNIST and others of that shape).

Images arrive as flattened pixel arrays (grey levels, or red, green and blue per pixel). The
model takes every image as height x width x 3 (a grey one repeated in each channel) and reads
it in colour or in grey levels (``options.colour``; by default colour when any training image
has colour). The scikit-learn candidates read HOG descriptors, intensity histograms (one per
channel in colour) and down-sampled pixels (scikit-image); the ``cnn`` candidate, a small
residual network (PyTorch), reads the pixels. All are chosen on the validation split, then
refit on train + val.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import PredefinedSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from modelmill.config.spec import PipelineSpec
from modelmill.data.imagefiles import has_colour
from modelmill.errors import SpecError
from modelmill.learn.evaluation import binary_metrics, binary_plots, figure
from modelmill.learn.kinds.base import KindOptions, Prepared, ProblemKind, Trained
from modelmill.learn.kinds.estimators import pick
from modelmill.learn.kinds.neural import CNNClassifier, training_curves
from modelmill.learn.kinds.selection import grid_select, predefined_parts

#: the scikit-learn scorer of each primary metric
SCORING = {"roc_auc": "roc_auc", "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy"}


class ImageOptions(KindOptions):
    height: int = Field(28, ge=8, description="image height in pixels")
    width: int = Field(28, ge=8, description="image width in pixels")
    positive_label_name: str | None = Field(
        None, description="name of the positive class in plots, scores and answers (default: its label in the data)"
    )
    negative_label_name: str | None = Field(
        None, description="name of the negative class in plots, scores and answers (default: its label in the data)"
    )
    colour: bool | None = Field(
        None,
        description="read the images in colour (true) or as grey levels (false); default: colour when any training image has colour",
        examples=[True],
    )
    hog_cell: int = Field(7, ge=2, description="cell size (pixels) of the HOG features of the feature-based models")
    augment_flips: bool = Field(
        True, description="fit the feature-based models on left-right mirrored copies of their training images too"
    )


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """RBF SVM with probabilities from a held-out sigmoid calibration (scikit-learn 1.9's
    replacement for ``SVC(probability=True)``)."""

    def __init__(self, C=1.0, gamma="scale", cv=5):
        self.C, self.gamma, self.cv = C, gamma, cv

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # the SVM takes sparse rows
        return tags

    def fit(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse="csr")
        self.model_ = CalibratedClassifierCV(SVC(C=self.C, gamma=self.gamma), ensemble=False, cv=self.cv).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.model_.predict_proba(validate_data(self, X, accept_sparse="csr", reset=False))

    def predict(self, X):
        check_is_fitted(self)
        return self.model_.predict(validate_data(self, X, accept_sparse="csr", reset=False))


#: ITU-R 601 luma weights: grey levels from red, green and blue, as PIL converts them
LUMA = np.array([0.299, 0.587, 0.114])


class MirrorAugmented(ClassifierMixin, BaseEstimator):
    """Fits ``pipeline`` on the images (rows of height x width x 3 pixels) in colour or grey
    levels (``colour``; None: colour when any training image has colour) and, with ``mirror``,
    their left-right mirrored copies: the copies exist only inside ``fit``, so a validation
    image's mirror never trains a model that is scored on it. The pipeline's steps with a
    ``colours`` parameter are told how many channels they get."""

    def __init__(self, pipeline, height=28, width=28, mirror=True, colour=None):
        self.pipeline, self.height, self.width, self.mirror, self.colour = pipeline, height, width, mirror, colour

    def _colours(self, X) -> np.ndarray:
        """Rows of height x width grey levels as height x width x 3 (each level in all three)."""
        from scipy.sparse import issparse

        shape = getattr(X, "shape", ())
        if len(shape) != 2 or shape[1] != self.height * self.width or issparse(X):
            return X  # validate_data says what is wrong with anything else
        return np.repeat(np.asarray(X), 3, axis=1)

    def _inputs(self, X) -> np.ndarray:
        """The rows to predict on, refused with the image size when they are not images of it."""
        X = self._colours(X)
        if not hasattr(self, "colours_"):  # fitted before models read colour: grey rows only
            return validate_data(self, self._grey(np.asarray(X, dtype=np.float64)), reset=False)
        shape = getattr(X, "shape", ())
        if len(shape) == 2 and hasattr(self, "n_features_in_") and shape[1] != self.n_features_in_:
            area = self.height * self.width
            raise ValueError(
                f"each row is a {self.height} x {self.width} image ({area} grey levels or {3 * area} colour values); got {shape[1]} columns"
            )
        return self._view(validate_data(self, X, reset=False))

    def _view(self, X: np.ndarray) -> np.ndarray:
        """The rows as the pipeline reads them: unchanged in colour, else rounded grey levels."""
        return X if self.colours_ == 3 else self._grey(X)

    @staticmethod
    def _grey(X: np.ndarray) -> np.ndarray:
        return np.rint(X.reshape(len(X), -1, 3) @ LUMA).astype(X.dtype)

    def fit(self, X, y):
        X, y = validate_data(self, self._colours(X), y)
        _check_pixels(X, self.height, self.width, 3)
        found = has_colour(X.reshape(len(X), -1, 3))
        self.colours_ = 3 if (found if self.colour is None else self.colour) else 1
        X = self._view(X)
        if self.mirror:
            mirrored = X.reshape(-1, self.height, self.width, self.colours_)[:, :, ::-1].reshape(len(X), -1)
            X, y = np.vstack([X, mirrored]), np.concatenate([y, y])
        pipeline = clone(self.pipeline)
        for _, step in getattr(pipeline, "steps", []):
            if "colours" in step.get_params(deep=False):
                step.set_params(colours=self.colours_)
        self.pipeline_ = pipeline.fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.pipeline_.predict_proba(self._inputs(X))

    def predict(self, X):
        check_is_fitted(self)
        return self.pipeline_.predict(self._inputs(X))


def _check_pixels(X: np.ndarray, height: int, width: int, colours: int = 1) -> None:
    if X.shape[1] != height * width * colours:
        what = "pixels" if colours == 1 else f"values: {colours} per pixel"
        raise ValueError(
            f"each row is a {height} x {width} image ({height * width * colours} {what}); got {X.shape[1]} columns"
        )


class ImageFeatures(TransformerMixin, BaseEstimator):
    """HOG + intensity histogram + 2x down-sampled grey levels of each (height x width) image in
    [0, 255]; with ``colours`` = 3 (rows of height x width x 3), HOG and the rest on the image's
    grey levels plus each channel's histogram, mean and spread."""

    def __init__(self, height=28, width=28, hog_cell=7, colours=1):
        self.height, self.width, self.hog_cell, self.colours = height, width, hog_cell, colours

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # nothing is learnt: each image's features are its own
        return tags

    def fit(self, X, y=None):
        _check_pixels(validate_data(self, X), self.height, self.width, self.colours)
        return self

    def transform(self, X):
        from skimage.feature import hog
        from skimage.transform import downscale_local_mean

        X = validate_data(self, X, dtype=np.float64, reset=False)  # stateless: fitted or not
        _check_pixels(X, self.height, self.width, self.colours)
        pixels = X.reshape(-1, self.height, self.width, self.colours) / 255.0
        imgs = pixels[..., 0] if self.colours == 1 else pixels @ LUMA
        feats = []
        for i, img in enumerate(imgs):
            h = hog(
                img,
                orientations=9,
                pixels_per_cell=(self.hog_cell, self.hog_cell),
                cells_per_block=(2, 2),
                feature_vector=True,
            )
            hist, _ = np.histogram(img, bins=16, range=(0, 1), density=True)
            small = downscale_local_mean(img, (2, 2)).ravel()
            colour = []
            if self.colours == 3:
                for channel in pixels[i].reshape(-1, 3).T:
                    colour += [
                        np.histogram(channel, bins=8, range=(0, 1), density=True)[0],
                        [channel.mean(), channel.std()],
                    ]
            feats.append(np.concatenate([h, hist, small, [img.mean(), img.std()], *colour]))
        return np.vstack(feats)


class ImageClassification(ProblemKind):
    name = "image_classification"
    Options = ImageOptions
    METRICS = {"roc_auc": "maximize", "accuracy": "maximize", "balanced_accuracy": "maximize"}
    HEADLINE = ("accuracy", "sensitivity", "specificity")
    EXAMPLE_ROWS = True
    FEATURES = ("image",)
    ESTIMATORS = pick(
        "dummy_prior",
        "logistic_regression",
        "hist_gradient_boosting",
        svc_rbf=lambda seed, **p: CalibratedSVC(**p),
        cnn=lambda seed, **p: CNNClassifier(**{"seed": seed, **p}),
    )

    def check_spec(self, spec: PipelineSpec) -> None:
        super().check_spec(spec)
        if not spec.features.image or spec.target is None or spec.positive_label is None:
            raise SpecError(
                f"pipeline {spec.name}: image classification needs features.image, target and positive_label"
            )
        self.require_split(spec, "predefined")

    def model_input(self, spec: PipelineSpec, df: pd.DataFrame) -> np.ndarray:
        """The images as the model takes them: one row of height x width x 3 values each (red,
        green, blue per pixel; a grey image's level in all three)."""
        opts = self.options(spec)
        area = opts.height * opts.width
        sizes = df[spec.features.image].map(lambda v: 0 if v is None else len(v))
        wrong = ~sizes.isin([area, 3 * area])
        if wrong.any():
            raise SpecError(
                f"pipeline {spec.name}: {int(wrong.sum())} of {len(df)} images have {int(sizes[wrong].iloc[0])} values, not {opts.height}x{opts.width} pixels "
                "(options.height and width) in grey or colour; set source.images.size to resize them as they are read"
            )
        rows = [np.asarray(p, dtype=np.float32) for p in df[spec.features.image]]
        return (
            np.vstack([p if len(p) == 3 * area else np.repeat(p, 3) for p in rows])
            if rows
            else np.zeros((0, 3 * area), np.float32)
        )

    def prepare(self, spec: PipelineSpec, df: pd.DataFrame) -> Prepared:
        X = self.model_input(spec, df)
        y = (df[spec.target].astype(str) == str(spec.positive_label)).astype(int).to_numpy()
        parts = predefined_parts(spec, df)
        train, val, test = parts == "train", parts == "val", parts == "test"
        if not val.any():
            raise SpecError(
                f"pipeline {spec.name}: image classification selects on the val split, and split column {spec.split.column} has no val rows"
            )
        X_fit, y_fit = np.vstack([X[train], X[val]]), np.concatenate([y[train], y[val]])
        val_fold = np.r_[
            np.full(int(train.sum()), -1), np.zeros(int(val.sum()), dtype=int)
        ]  # PredefinedSplit: -1 = always train
        info = {
            "train_rows": int(train.sum()),
            "val_rows": int(val.sum()),
            "test_rows": int(test.sum()),
            "positive_rate_test": float(y[test].mean()),
        }
        return Prepared(
            (X_fit, y_fit, val_fold),
            (X[test], y[test]),
            info,
            self.label_names(spec, df[spec.target]),
            self.test_keys(spec, df, np.flatnonzero(test)),
        )

    def _pipeline(self, spec: PipelineSpec, model) -> MirrorAugmented:
        """The model behind its featurizer; a CNN reads the images themselves (and augments them
        in every epoch), the others get mirrored copies of the images they are fitted on."""
        opts = self.options(spec)
        if getattr(model, "consumes", None) == "pixels":
            return MirrorAugmented(
                Pipeline([("model", model.set_params(height=opts.height, width=opts.width))]),
                opts.height,
                opts.width,
                mirror=False,
                colour=opts.colour,
            )
        return MirrorAugmented(
            Pipeline(
                [
                    ("features", ImageFeatures(opts.height, opts.width, opts.hog_cell)),
                    ("scale", StandardScaler()),
                    ("model", model),
                ]
            ),
            opts.height,
            opts.width,
            mirror=opts.augment_flips,
            colour=opts.colour,
        )

    def train(self, spec: PipelineSpec, data: Prepared) -> Trained:
        X, y, val_fold = data.train
        scoring = SCORING[spec.metric.name]

        def pipeline(c):
            return self._pipeline(spec, self.build(c, spec))

        best_name, best, table, chosen = grid_select(
            spec, pipeline, X, y, cv=PredefinedSplit(val_fold), scoring=scoring, step="pipeline__model"
        )
        baseline = self.fit_baseline(spec, pipeline, X, y)
        return Trained(best, baseline, best_name, table, {}, chosen)

    def importance_input(self, spec: PipelineSpec, data: Prepared):
        """Regions of the image (a 4 x 4 grid), each shuffled among the test images as a whole:
        which part of an image the model reads."""
        from modelmill.learn.explain import image_regions

        X, y = data.test
        opts = self.options(spec)
        scoring = SCORING[spec.metric.name]
        return X, y, scoring, image_regions(opts.height, opts.width, channels=3)

    def metrics(self, spec: PipelineSpec, model, data: Prepared) -> dict[str, float]:
        X, y = data.test
        p = model.predict_proba(X)[:, 1]
        return binary_metrics(y, p, (p >= 0.5).astype(int))  # MedMNIST reports ACC at 0.5

    def report(self, spec: PipelineSpec, trained: Trained, data: Prepared):
        opts = self.options(spec)
        X, y = data.test
        p = trained.model.predict_proba(X)[:, 1]
        yhat = (p >= 0.5).astype(int)
        shown = self.label_display(spec, data.labels)
        figs = binary_plots(y, p, yhat, shown, spec.name, pr=False)
        wrong = np.flatnonzero(yhat != y)
        fig, _ = figure(10, 10)
        fig.clf()
        names = {0: str(shown[0]), 1: str(shown[1])}
        for i, idx in enumerate(wrong[:36]):
            ax = fig.add_subplot(6, 6, i + 1)
            ax.imshow(X[idx].reshape(opts.height, opts.width, 3).clip(0, 255).astype(np.uint8))
            ax.set_title(f"true {names[y[idx]][:9]}\np={p[idx]:.2f}", fontsize=7)
            ax.axis("off")
        fig.suptitle(f"{spec.name}: {len(wrong)} misclassified test images (first 36)")
        figs["misclassified.png"] = fig
        if (curves := training_curves(trained.model, spec.name)) is not None:
            figs["training_curves.png"] = curves
        return figs, {}

    def examples(self, model, data: Prepared):
        X = data.test[0][:3]
        return X, model.predict_proba(X)
