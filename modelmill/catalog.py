"""The dataset catalog: id -> canonical files, licence, citation and the reader for its format.

Checksums are recorded only where the canonical file is known to be byte-stable; a mirror may
publish its own ``SHA256SUMS.tsv`` (``size<TAB>sha256<TAB><id>/<file>``), which is then checked
too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogFile:
    name: str
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    title: str
    reader: str
    files: tuple[CatalogFile, ...]
    licence: str
    citation: str
    homepage: str
    notes: str = ""
    date_column: str | None = None
    #: live sources (new rows every day): a cached copy older than this is downloaded again
    max_age_hours: float | None = None


_UCI = "https://archive.ics.uci.edu/static/public"
_STOOQ = "https://stooq.com/q/d/l/?s={symbol}&i=d"
_BANKING = "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data"
TICKERS = ("aapl.us", "msft.us", "ibm.us", "googl.us")

CATALOG: dict[str, CatalogEntry] = {
    e.id: e
    for e in [
        CatalogEntry(
            id="german-credit",
            title="Statlog (German Credit Data)",
            reader="german_credit",
            files=(CatalogFile("statlog+german+credit+data.zip", f"{_UCI}/144/statlog+german+credit+data.zip"),),
            licence="CC BY 4.0",
            citation="Hofmann, H. (1994). Statlog (German Credit Data). UCI ML Repository. doi:10.24432/C5NC77",
            homepage="https://archive.ics.uci.edu/dataset/144",
            notes="german.data: 1000 rows, 20 attributes + class (1 good, 2 bad); cost matrix in german.doc",
        ),
        CatalogEntry(
            id="wisconsin-breast-cancer",
            title="Breast Cancer Wisconsin (Diagnostic), bundled with scikit-learn",
            reader="wisconsin",
            files=(),
            licence="CC BY 4.0",
            citation="Wolberg, W., Mangasarian, O., Street, N., Street, W. (1993). UCI ML Repository dataset 17. doi:10.24432/C5DW2B",
            homepage="https://archive.ics.uci.edu/dataset/17",
        ),
        CatalogEntry(
            id="stooq-daily",
            title="Daily stock prices (Stooq CSV)",
            reader="stooq",
            files=tuple(CatalogFile(f"{t}.csv", _STOOQ.format(symbol=t)) for t in TICKERS),
            licence="Quandl WIKI prices: public domain (mirror); Stooq terms for the live source",
            citation="Stooq daily quotes; Quandl WIKI prices",
            homepage="https://stooq.com",
            date_column="date",
            max_age_hours=20,
        ),
        CatalogEntry(
            id="breastmnist",
            title="BreastMNIST (MedMNIST v2)",
            reader="breastmnist",
            files=(
                CatalogFile(
                    "breastmnist.npz",
                    "https://zenodo.org/records/10519652/files/breastmnist.npz?download=1",
                    sha256="3a22d2a4625e7dd8903f0f59030e81a3d0c222bece2e5e10927456cb50efdec1",
                ),
            ),
            licence="CC BY 4.0",
            citation="Yang et al., MedMNIST v2, Sci. Data 10:41 (2023); Al-Dhabyani et al., Data in Brief 28 (2020)",
            homepage="https://medmnist.com",
        ),
        CatalogEntry(
            id="banking77",
            title="BANKING77 intent detection",
            reader="banking77",
            files=(CatalogFile("train.csv", f"{_BANKING}/train.csv"), CatalogFile("test.csv", f"{_BANKING}/test.csv")),
            licence="CC BY 4.0",
            citation='Casanueva et al., "Efficient Intent Detection with Dual Sentence Encoders" (2020)',
            homepage="https://github.com/PolyAI-LDN/task-specific-datasets",
        ),
        CatalogEntry(
            id="sentiment-sentences",
            title="Sentiment Labelled Sentences (Amazon, Yelp, IMDb)",
            reader="sentiment_sentences",
            files=(CatalogFile("sentiment+labelled+sentences.zip", f"{_UCI}/331/sentiment+labelled+sentences.zip"),),
            licence="CC BY 4.0",
            citation='Kotzias et al., "From Group to Individual Labels using Deep Features", KDD 2015',
            homepage="https://archive.ics.uci.edu/dataset/331",
        ),
        CatalogEntry(
            id="online-retail",
            title="Online Retail (UCI)",
            reader="online_retail",
            files=(CatalogFile("online+retail.zip", f"{_UCI}/352/online+retail.zip"),),
            licence="CC BY 4.0",
            citation="Chen, D. (2015). Online Retail. UCI ML Repository. doi:10.24432/C5BW33",
            homepage="https://archive.ics.uci.edu/dataset/352",
            date_column="invoice_date",
        ),
    ]
}


def get_entry(dataset_id: str) -> CatalogEntry:
    from modelmill.errors import SpecError

    try:
        return CATALOG[dataset_id]
    except KeyError:
        raise SpecError(f"unknown dataset {dataset_id!r} (catalog: {', '.join(CATALOG)})") from None
