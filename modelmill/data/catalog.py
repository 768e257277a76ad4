"""The dataset catalog: id -> canonical files, licence, citation and the reader for its format.

Checksums pin the canonical content wherever it is fixed (everything but live prices): either the
sha256 of the downloaded file, or — for archives that are re-packed by mirrors and whose zip bytes
vary — the sha256 of the data files inside them (``members``). Each pin below agrees with at least
two independent records (the mirror's copy plus published checksums of the same canonical file in
other projects: Hugging Face ``datasets`` for BANKING77, MedMNIST's MD5, data-loading code pinning
``german.data``/the sentiment files). A file matching no pin is refused, whatever a mirror says.
Online Retail has no pin: the one published sha256 of its workbook found could not be confirmed
offline (the mirror's workbook differs from it), so it is checked against the mirror's own
``SHA256SUMS.tsv`` (``size<TAB>sha256<TAB><id>/<file>``) when there is one, and otherwise pinned at
first use (see :mod:`modelmill.data.fetch`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogFile:
    name: str
    url: str
    sha256: str | None = None
    #: (member file name, sha256) of the data files its reader takes from the archive (matched in
    #: any folder, as the reader matches them): the canonical data, however the archive is packed
    members: tuple[tuple[str, str], ...] = ()

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.members)


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
            files=(
                CatalogFile(
                    "statlog+german+credit+data.zip",
                    f"{_UCI}/144/statlog+german+credit+data.zip",
                    members=(("german.data", "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871"),),
                ),
            ),
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
            files=(
                CatalogFile(
                    "train.csv",
                    f"{_BANKING}/train.csv",
                    sha256="b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
                ),
                CatalogFile(
                    "test.csv",
                    f"{_BANKING}/test.csv",
                    sha256="d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
                ),
            ),
            licence="CC BY 4.0",
            citation='Casanueva et al., "Efficient Intent Detection with Dual Sentence Encoders" (2020)',
            homepage="https://github.com/PolyAI-LDN/task-specific-datasets",
        ),
        CatalogEntry(
            id="sentiment-sentences",
            title="Sentiment Labelled Sentences (Amazon, Yelp, IMDb)",
            reader="sentiment_sentences",
            files=(
                CatalogFile(
                    "sentiment+labelled+sentences.zip",
                    f"{_UCI}/331/sentiment+labelled+sentences.zip",
                    members=tuple(
                        (f"{name}_labelled.txt", sha)
                        for name, sha in (
                            ("amazon_cells", "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3"),
                            ("imdb", "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d"),
                            ("yelp", "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea"),
                        )
                    ),
                ),
            ),
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
