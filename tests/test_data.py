import functools
import http.server
import threading

import pytest

from tests.conftest import write_review_tarball
from training.data import DataError, download, load_imdb

REVIEWS = {
    "train/pos/3_10.txt": "A wonderful film.",
    "train/pos/1_8.txt": "Great acting<br />and story.",
    "train/neg/2_1.txt": "Terrible.",
    "test/neg/5_3.txt": "Boring and slow.",
    "test/pos/4_9.txt": "Loved it — café scenes too.",
    "train/unsup/9_0.txt": "unlabelled reviews are ignored",
    "train/pos/notes.md": "not a review",
}


def write_review_folder(root, reviews):
    for name, text in reviews.items():
        path = root / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def expected_splits():
    return {
        "train": (["Terrible.", "Great acting<br />and story.", "A wonderful film."], [0, 1, 1]),
        "test": (["Boring and slow.", "Loved it — café scenes too."], [0, 1]),
    }


def as_tuples(splits):
    return {name: (split.texts, split.labels) for name, split in splits.items()}


def test_ratings_come_from_the_file_names(tmp_path):
    archive = write_review_tarball(tmp_path / "imdb.tar.gz", REVIEWS)
    splits = load_imdb(archive)
    assert splits["train"].ratings == [1, 8, 10] and splits["test"].ratings == [3, 9]


def test_reads_the_archive_in_place(tmp_path):
    archive = write_review_tarball(tmp_path / "imdb.tar.gz", REVIEWS)
    assert as_tuples(load_imdb(archive)) == expected_splits()


def test_reads_an_extracted_folder_or_its_parent(tmp_path):
    write_review_folder(tmp_path, REVIEWS)
    assert as_tuples(load_imdb(tmp_path)) == expected_splits()
    assert as_tuples(load_imdb(tmp_path / "aclImdb")) == expected_splits()


def test_archive_and_folder_agree_on_real_data(sample_archive, tmp_path):
    import tarfile

    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.11.4 and later
    with tarfile.open(sample_archive) as archive:
        archive.extractall(tmp_path, **safe)
    from_archive, from_folder = load_imdb(sample_archive), load_imdb(tmp_path)
    assert as_tuples(from_archive) == as_tuples(from_folder)
    assert len(from_archive["train"]) == len(from_archive["test"]) == 200
    assert sum(from_archive["train"].labels) == 100


def test_missing_path_says_what_was_expected(tmp_path):
    with pytest.raises(DataError, match="does not exist; expected aclImdb_v1.tar.gz or an aclImdb/ folder"):
        load_imdb(tmp_path / "nowhere.tar.gz")


def test_folder_without_dataset_is_rejected(tmp_path):
    with pytest.raises(DataError, match="has no aclImdb/ folder"):
        load_imdb(tmp_path)


def test_file_that_is_not_an_archive_is_rejected(tmp_path):
    bogus = tmp_path / "imdb.tar.gz"
    bogus.write_text("not a tarball")
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_imdb(bogus)


def test_archive_without_a_split_is_rejected(tmp_path):
    archive = write_review_tarball(tmp_path / "imdb.tar.gz", {"train/pos/1_9.txt": "x", "train/neg/2_1.txt": "y"})
    with pytest.raises(DataError, match="no test reviews"):
        load_imdb(archive)


def test_split_with_one_class_is_rejected(tmp_path):
    archive = write_review_tarball(tmp_path / "imdb.tar.gz", {
        "train/pos/1_9.txt": "x", "train/neg/2_1.txt": "y", "test/pos/3_9.txt": "z"})
    with pytest.raises(DataError, match="test split has only one class"):
        load_imdb(archive)


@pytest.fixture
def loopback_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_fetches_and_reads_a_served_archive(tmp_path, loopback_server):
    root, url = loopback_server
    write_review_tarball(root / "aclImdb_v1.tar.gz", REVIEWS)
    destination = download(f"{url}/aclImdb_v1.tar.gz", tmp_path / "cache" / "imdb.tar.gz")
    assert as_tuples(load_imdb(destination)) == expected_splits()
    assert not destination.with_name("imdb.tar.gz.part").exists()


def test_download_reports_a_missing_file(tmp_path, loopback_server):
    _, url = loopback_server
    with pytest.raises(DataError, match="could not download .*404"):
        download(f"{url}/missing.tar.gz", tmp_path / "imdb.tar.gz")
    assert not (tmp_path / "imdb.tar.gz").exists()


def test_pipeline_download_flag_uses_the_given_url(tmp_path, loopback_server, monkeypatch):
    from training import pipeline

    root, url = loopback_server
    write_review_tarball(root / "aclImdb_v1.tar.gz", REVIEWS)
    destination = tmp_path / "imdb.tar.gz"
    args = pipeline.parse_args(["--download", "--download-url", f"{url}/aclImdb_v1.tar.gz", "--data", str(destination)])
    pipeline.fetch_data(args)
    assert as_tuples(load_imdb(destination)) == expected_splits()
