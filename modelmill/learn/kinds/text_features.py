"""Text as features: the column a text model reads, and word + character TF-IDF. Shared by the
text kind's own candidates and the sentence-encoder ensembles beside them."""

from __future__ import annotations

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion


class TextColumn(TransformerMixin, BaseEstimator):
    """Selects the text column, so the logged model takes a frame with that column."""

    def __init__(self, column="text"):
        self.column = column

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        col = X[self.column] if isinstance(X, pd.DataFrame) else pd.Series(X)
        return col.fillna("").astype(str).to_numpy()


def featurizer(word_ngrams=(1, 2), char_ngrams=(2, 5), min_df=2) -> FeatureUnion:
    """Word and character TF-IDF (sublinear, lower-cased) side by side."""
    return FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=tuple(word_ngrams), min_df=min_df, sublinear_tf=True, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngrams), min_df=min_df, sublinear_tf=True, lowercase=True)),
    ])  # fmt: skip
