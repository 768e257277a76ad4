"""Getting data: directory mirror, http mirror over loopback (the real download path), cache,
checksums, unreachable sources, and parsing errors of each reader kind."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace

import pytest

from conftest import free_port, modelmill_env, require_mirror, run_cli, serve_directory
from modelmill.config.settings import Settings
from modelmill.data.catalog import CATALOG
from modelmill.data.digests import sha256_file
from modelmill.data.fetch import LocalFile, fetch_catalog_file, pin_first_use
from modelmill.data.readers import READERS
from modelmill.errors import ChecksumMismatch, CorruptSource, SourceUnavailable

GERMAN = CATALOG["german-credit"]
ZIP = GERMAN.files[0]


def _settings(tmp_path, mirror=None, **kw) -> Settings:
    return Settings(
        home=tmp_path / "home",
        data_mirror=str(mirror) if mirror else None,
        download_retries=2,
        download_timeout=5,
        **kw,
    )


def test_directory_mirror_is_read_in_place_and_verified_against_its_sums(tmp_path):
    mirror = require_mirror()
    lf = fetch_catalog_file(GERMAN, ZIP, _settings(tmp_path, mirror))
    assert lf.path == mirror / "german-credit" / ZIP.name
    sums = (mirror / "SHA256SUMS.tsv").read_text()
    assert lf.sha256 in sums


def test_http_mirror_downloads_into_the_cache(tmp_path):
    mirror = require_mirror()
    with serve_directory(mirror) as url:
        s = _settings(tmp_path, url)
        lf = fetch_catalog_file(GERMAN, ZIP, s)
        assert lf.path.is_relative_to(s.cache_dir) and lf.uri.startswith(url)
        assert lf.sha256 == sha256_file(mirror / "german-credit" / ZIP.name)
        df = READERS[GERMAN.reader]({ZIP.name: lf})
    assert df.shape == (1000, 21)


def test_all_catalog_files_come_through_the_http_mirror(tmp_path):
    mirror = require_mirror()
    with serve_directory(mirror) as url:
        s = _settings(tmp_path, url)
        for entry in CATALOG.values():
            for f in entry.files:
                if entry.id == "online-retail":
                    continue  # 25 MB: covered by its flow test from the directory mirror
                assert fetch_catalog_file(entry, f, s).path.stat().st_size > 0


def _copy_mirror(tmp_path, dataset: str, sums: bool):
    src = require_mirror()
    dst = tmp_path / "mirror"
    shutil.copytree(src / dataset, dst / dataset)
    if sums:
        shutil.copy(src / "SHA256SUMS.tsv", dst / "SHA256SUMS.tsv")
    return dst


def test_checksum_mismatch_keeps_the_good_cached_copy(tmp_path):
    mirror = _copy_mirror(tmp_path, "german-credit", sums=True)
    with serve_directory(mirror) as url:
        s = _settings(tmp_path, url)
        good = fetch_catalog_file(GERMAN, ZIP, s)
        before = good.path.read_bytes()
        # The mirror now serves a tampered file under the same name: refused, cache intact.
        target = mirror / "german-credit" / ZIP.name
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        with pytest.raises(ChecksumMismatch, match="checksum mismatch for german-credit/"):
            fetch_catalog_file(GERMAN, ZIP, s, refresh=True)
    assert good.path.read_bytes() == before


def test_catalog_checksum_is_enforced_without_mirror_sums(tmp_path):
    entry = CATALOG["breastmnist"]
    mirror = _copy_mirror(tmp_path, "breastmnist", sums=False)
    (mirror / "breastmnist" / "breastmnist.npz").write_bytes(b"PK\x03\x04 not the real file")
    with pytest.raises(ChecksumMismatch):
        fetch_catalog_file(entry, entry.files[0], _settings(tmp_path, mirror))


def _german_zip_with_one_row_changed(path):
    """A valid, readable archive whose data differ from the real one: a quiet alteration."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = next(n for n in members if n.endswith("german.data"))
    lines = members[name].decode().splitlines(keepends=True)
    lines[0] = lines[0].replace("A11", "A14", 1)
    members[name] = "".join(lines).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _repack(path, change=None):
    """Rewrite the archive member by member (other compression, other order): same data, new bytes;
    ``change(name, data)`` may alter a member's data."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    before = sha256_file(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for n in reversed(list(members)):
            z.writestr(n, change(n, members[n]) if change else members[n])
    assert sha256_file(path) != before


def test_every_fixed_catalog_file_is_pinned_and_the_mirror_matches_the_pins(tmp_path):
    """Every catalog file but live prices pins its canonical content; the mirror's copies match."""
    mirror = require_mirror()
    s = _settings(tmp_path, mirror)
    unpinned = [
        f"{e.id}/{f.name}" for e in CATALOG.values() if e.max_age_hours is None for f in e.files if not f.pinned
    ]
    assert unpinned == ["online-retail/online+retail.zip"]  # see the catalog's docstring
    for entry in CATALOG.values():
        for f in entry.files:
            if f.pinned:
                assert fetch_catalog_file(entry, f, s).verified == "known"


@pytest.mark.parametrize("dataset", ["german-credit", "sentiment-sentences"])
def test_archives_are_checked_by_their_data_files_without_mirror_sums(tmp_path, dataset):
    entry = CATALOG[dataset]
    f = entry.files[0]
    mirror = _copy_mirror(tmp_path, dataset, sums=False)
    archive = mirror / dataset / f.name
    s = _settings(tmp_path, mirror)
    _repack(archive)  # re-packed, same data: accepted as the canonical data
    assert fetch_catalog_file(entry, f, s).verified == "known"
    member = f.members[0][0]
    _repack(archive, lambda n, d: d.replace(b"1\n", b"0\n", 1) if n.endswith(member) else d)
    assert (
        READERS[entry.reader]({f.name: LocalFile(f.name, archive, archive.as_uri(), "")}).shape[0] > 0
    )  # it would parse
    with pytest.raises(ChecksumMismatch, match=f"not the canonical data \\(its .*{member} has sha256"):
        fetch_catalog_file(entry, f, s)


def test_a_second_copy_of_a_pinned_member_in_another_folder_is_refused(tmp_path):
    mirror = _copy_mirror(tmp_path, "german-credit", sums=False)
    archive = mirror / "german-credit" / ZIP.name
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(
            "extra/german.data", "A14 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n"
        )
    with pytest.raises(ChecksumMismatch, match="extra/german.data has sha256"):
        fetch_catalog_file(GERMAN, ZIP, _settings(tmp_path, mirror))


def test_banking77_is_pinned_by_file_even_when_the_mirror_vouches_for_another(tmp_path):
    entry = CATALOG["banking77"]
    mirror = _copy_mirror(tmp_path, "banking77", sums=True)
    train = mirror / "banking77" / "train.csv"
    train.write_text(train.read_text().replace("card_arrival", "card_linking", 1))
    sums = mirror / "SHA256SUMS.tsv"
    sums.write_text(sums.read_text().replace(entry.files[0].sha256, sha256_file(train)))
    with pytest.raises(ChecksumMismatch, match="expected sha256 b06e26ac6755"):
        fetch_catalog_file(entry, entry.files[0], _settings(tmp_path, mirror))


def test_a_mirror_without_sums_cannot_slip_in_an_altered_unpinned_file(tmp_path, caplog):
    """Online Retail has no canonical pin: the first use pins it, later alterations are refused."""
    entry = replace(GERMAN, files=(replace(ZIP, members=()),))  # an unpinned catalog file, small
    mirror = _copy_mirror(tmp_path, "german-credit", sums=False)
    s = _settings(tmp_path, mirror)
    first = fetch_catalog_file(entry, entry.files[0], s)
    assert first.verified == "first-use"
    assert any("accepted without a known checksum" in r.getMessage() for r in caplog.records)
    assert not (s.home_dir / "checksums.json").exists(), "pinned only once a run's gate passed"
    pin_first_use(s, [{"file": ZIP.name, "sha256": first.sha256, "verified": first.verified, "pin_key": first.pin_key}])
    assert fetch_catalog_file(entry, entry.files[0], s).verified == "pinned"
    altered = mirror / "german-credit" / ZIP.name
    _german_zip_with_one_row_changed(altered)
    assert READERS[GERMAN.reader]({ZIP.name: LocalFile(ZIP.name, altered, altered.as_uri(), "")}).shape == (
        1000,
        21,
    )  # it would parse
    with pytest.raises(ChecksumMismatch, match="differs from the sha256 pinned at its first use"):
        fetch_catalog_file(entry, entry.files[0], s)


def test_a_live_source_is_not_pinned(tmp_path):
    entry = CATALOG["stooq-daily"]
    mirror = _copy_mirror(tmp_path, "stooq-daily", sums=False)
    assert fetch_catalog_file(entry, entry.files[0], _settings(tmp_path, mirror)).verified == "live"
    assert not (tmp_path / "home" / "checksums.json").exists()


def test_unreachable_source_names_the_mirror_setting(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/statlog+german+credit+data.zip"
    with pytest.raises(SourceUnavailable) as e:
        fetch_catalog_file(GERMAN, ZIP, _settings(tmp_path), url_override=dead)
    msg = str(e.value)
    assert "MODELMILL_DATA_MIRROR" in msg and "127.0.0.1" in msg and "\n" not in msg
    assert not list((tmp_path / "home" / "cache").rglob("*.zip"))


def test_file_missing_from_a_directory_mirror(tmp_path):
    (tmp_path / "empty-mirror").mkdir()
    with pytest.raises(SourceUnavailable, match="not in the mirror"):
        fetch_catalog_file(GERMAN, ZIP, _settings(tmp_path, tmp_path / "empty-mirror"))


@pytest.mark.parametrize(
    "dataset, damage, message",
    [
        ("german-credit", lambda b: b[: len(b) // 2], "not a readable zip"),
        ("german-credit", lambda b: b"", "is empty"),
        ("sentiment-sentences", lambda b: b[:100], "not a readable zip"),
        ("breastmnist", lambda b: b[: len(b) // 3], "npz"),
    ],
)
def test_truncated_or_empty_archives_raise_corrupt_source(tmp_path, dataset, damage, message):
    entry = CATALOG[dataset]
    mirror = _copy_mirror(tmp_path, dataset, sums=False)
    f = entry.files[0]
    p = mirror / dataset / f.name
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(ChecksumMismatch):  # the catalog pins it: fetching refuses it first
        fetch_catalog_file(entry, f, _settings(tmp_path, mirror))
    with pytest.raises(CorruptSource, match=message):  # and its reader says what is wrong with it
        READERS[entry.reader]({f.name: LocalFile(f.name, p, p.as_uri(), "")})


def test_german_rows_with_a_missing_field_are_refused(tmp_path):
    mirror = _copy_mirror(tmp_path, "german-credit", sums=False)
    p = mirror / "german-credit" / ZIP.name
    with zipfile.ZipFile(p) as z:
        rows = z.read("german.data").decode().splitlines()
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("german.data", "\n".join(" ".join(r.split()[:-1]) for r in rows) + "\n")
    with pytest.raises(CorruptSource, match="expected 21"):
        READERS[GERMAN.reader]({ZIP.name: LocalFile(ZIP.name, p, p.as_uri(), "")})


def test_every_reader_parses_its_real_mirrored_file(tmp_path):
    s = _settings(tmp_path, require_mirror())
    shapes = {}
    for entry in CATALOG.values():
        if entry.id == "online-retail":
            continue  # 15 s to parse: covered by the recommendation flow test
        files = {f.name: fetch_catalog_file(entry, f, s) for f in entry.files}
        shapes[entry.id] = READERS[entry.reader](files).shape
    assert shapes["german-credit"] == (1000, 21)
    assert shapes["wisconsin-breast-cancer"] == (569, 31)
    assert shapes["breastmnist"][0] == 780
    assert shapes["banking77"][0] == 10003 + 3080
    assert shapes["sentiment-sentences"][0] == 3000
    assert shapes["stooq-daily"][1] == 7


def test_datasets_pull_fills_the_cache_from_an_http_mirror(tmp_path, monkeypatch, capsys):
    with serve_directory(require_mirror()) as url:
        modelmill_env(monkeypatch, tmp_path / "home", url)
        code, _, err = run_cli(capsys, "datasets", "pull", "german-credit", "banking77", "wisconsin-breast-cancer")
    assert code == 0, err
    cached = sorted(p.name for p in (tmp_path / "home" / "cache").rglob("*") if p.is_file())
    assert cached == ["statlog+german+credit+data.zip", "test.csv", "train.csv"]
    assert "bundled with scikit-learn" in err


def test_datasets_pull_of_an_unknown_id_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    code, _, err = run_cli(capsys, "datasets", "pull", "movielens")
    assert code == 1 and "unknown dataset 'movielens'" in err and len(err.strip().splitlines()) == 1


def test_trigger_without_a_prefect_server_says_what_to_do(tmp_path, monkeypatch, capsys):
    modelmill_env(monkeypatch, tmp_path / "home", require_mirror())
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    code, _, err = run_cli(capsys, "trigger", "credit_risk")
    assert code == 1 and "modelmill serve" in err and "PREFECT_API_URL" in err


def test_a_live_source_is_downloaded_again_when_stale_and_falls_back_to_the_cache(tmp_path):
    """Stooq prices change daily: an old cached copy is refreshed, or used (with a warning) when
    the source cannot be reached."""
    import os
    import time

    entry = CATALOG["stooq-daily"]
    f = entry.files[0]
    served = _copy_mirror(tmp_path, "stooq-daily", sums=False) / "stooq-daily"
    s = _settings(tmp_path)
    with serve_directory(served) as url:
        first = fetch_catalog_file(entry, f, s, url_override=f"{url}/{f.name}")
        old = time.time() - 2 * 24 * 3600
        os.utime(first.path, (old, old))
        (served / f.name).write_text((served / f.name).read_text() + "2013-03-04,1,1,1,1,1\n")
        fresh = fetch_catalog_file(entry, f, s, url_override=f"{url}/{f.name}")
    assert fresh.path == first.path and fresh.sha256 != first.sha256
    os.utime(fresh.path, (old, old))
    # The server is gone: the stale copy is used rather than failing the run ...
    stale = fetch_catalog_file(entry, f, s, url_override=f"{url}/{f.name}")
    assert stale.sha256 == fresh.sha256
    # ... but with no cached copy at all, the source being unreachable is an error.
    with pytest.raises(SourceUnavailable):
        fetch_catalog_file(entry, f, s, url_override=f"http://127.0.0.1:{free_port()}/{f.name}")
