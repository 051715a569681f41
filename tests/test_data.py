"""The dataset reader, the data setting (IMDB_DATA_DIR, data/, ../shared/data) and `make data`: copies from a
shared folder and downloads from a server on loopback, checked against the published checksums."""

import functools
import hashlib
import http.server
import subprocess
import threading

import pytest

from tests.conftest import REPO_ROOT, write_review_tarball
from training import cad, data, fetch_data
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


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # not on stderr, where the tests read the commands' errors
        pass


@pytest.fixture
def loopback_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
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
    word_index = tmp_path / "imdb_word_index.json"
    word_index.write_text('{"good": 1}')
    args = pipeline.parse_args(["--download", "--download-url", f"{url}/aclImdb_v1.tar.gz", "--data", str(destination),
                                "--word-index", str(word_index)])
    pipeline.fetch_data(args)
    assert as_tuples(load_imdb(destination)) == expected_splits()


def test_pipeline_download_flag_fills_the_folder_the_setting_names(tmp_path, loopback_server, monkeypatch):
    from training import pipeline

    root, url = loopback_server
    write_review_tarball(root / "aclImdb_v1.tar.gz", REVIEWS)
    (root / "imdb_word_index.json").write_text('{"the": 1}')
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "imdb"))
    monkeypatch.setattr(pipeline, "WORD_INDEX_URL", f"{url}/imdb_word_index.json")
    monkeypatch.setitem(data.MD5, data.WORD_INDEX_FILE, md5_of(root / "imdb_word_index.json"))
    args = pipeline.parse_args(["--download", "--download-url", f"{url}/aclImdb_v1.tar.gz"])
    assert args.data == tmp_path / "imdb" / "aclImdb_v1.tar.gz"
    dataset, word_index = pipeline.read_inputs(args)
    assert as_tuples(dataset) == expected_splits() and word_index == {"the": 1}

def test_download_with_a_wrong_checksum_deletes_the_file_and_fails(tmp_path, loopback_server):
    root, url = loopback_server
    write_review_tarball(root / "aclImdb_v1.tar.gz", REVIEWS)
    destination = tmp_path / "cache" / "aclImdb_v1.tar.gz"
    with pytest.raises(DataError, match=r"md5 [0-9a-f]{32} is not the expected 0{32}; the file was deleted"):
        download(f"{url}/aclImdb_v1.tar.gz", destination, md5="0" * 32)
    assert list(destination.parent.iterdir()) == []
    md5 = hashlib.md5((root / "aclImdb_v1.tar.gz").read_bytes()).hexdigest()
    assert download(f"{url}/aclImdb_v1.tar.gz", destination, md5=md5) == destination


# The data setting


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """``data/`` and ``../shared/data`` stand-ins, and no IMDB_DATA_DIR."""
    local, shared = tmp_path / "repo" / "data", tmp_path / "shared" / "data"
    monkeypatch.setattr(data, "DEFAULT_DATA_DIRS", (local, shared))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    return local, shared


def put_data(folder, archive=data.LABELED_ARCHIVE, word_index=True):
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        write_review_tarball(folder / archive, REVIEWS)
    if word_index:
        (folder / data.WORD_INDEX_FILE).write_text('{"the": 1}')
    return folder


def test_the_setting_names_the_data_folder_even_when_it_is_empty(data_dirs, tmp_path, monkeypatch):
    put_data(data_dirs[0])
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert data.data_dir() == tmp_path / "elsewhere"
    assert data.dataset_path() == tmp_path / "elsewhere" / "aclImdb_v1_labeled.tar.gz"
    assert data.word_index_path() == tmp_path / "elsewhere" / "imdb_word_index.json"


def test_without_the_setting_data_comes_from_the_repository_folder_first(data_dirs):
    local, shared = data_dirs
    put_data(local)
    put_data(shared)
    assert data.data_dir() == local


def test_without_the_setting_the_shared_folder_serves_when_the_repository_folder_lacks_a_file(data_dirs):
    local, shared = data_dirs
    put_data(local, word_index=False)
    put_data(shared)
    assert data.data_dir() == shared
    assert data.dataset_path() == shared / "aclImdb_v1_labeled.tar.gz"


def test_without_any_data_the_repository_folder_is_named(data_dirs):
    assert data.data_dir() == data_dirs[0]
    with pytest.raises(DataError) as raised:
        data.require_data_file(data.dataset_path())
    message = str(raised.value)
    assert "\n" not in message and "IMDB_DATA_DIR is not set" in message and "`make data`" in message
    assert str(data_dirs[0]) in message and str(data_dirs[1]) in message


def test_the_official_archive_name_is_accepted_and_the_labeled_one_preferred(data_dirs):
    local, _ = data_dirs
    put_data(local, archive=data.OFFICIAL_ARCHIVE)
    assert data.dataset_path() == local / "aclImdb_v1.tar.gz"
    put_data(local, archive=data.LABELED_ARCHIVE, word_index=False)
    assert data.dataset_path() == local / "aclImdb_v1_labeled.tar.gz"


def test_a_missing_word_index_names_the_setting(data_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(put_data(tmp_path / "d", word_index=False)))
    data.require_data_file(data.dataset_path())
    with pytest.raises(DataError, match=r"^imdb_word_index.json not found in IMDB_DATA_DIR=.*/d: run `make data`"):
        data.require_data_file(data.word_index_path())


# make data: python -m training.fetch_data


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def published(monkeypatch):
    """Stand-ins for the published archive and word index, with their checksums as the published ones."""

    def publish(folder, archive=data.OFFICIAL_ARCHIVE):
        put_data(folder, archive=archive)
        (folder / "cad").mkdir()
        for split, name in cad.SPLIT_FILES.items():
            (folder / "cad" / name).write_text(f"Sentiment\tText\tbatch_id\nPositive\tA {split} review.\t1\n")
        for name in (archive, data.WORD_INDEX_FILE):
            monkeypatch.setitem(data.MD5, name, md5_of(folder / name))
        return folder

    return publish


def test_make_data_copies_from_the_shared_folder(tmp_path, published, capsys):
    shared = published(tmp_path / "shared", archive=data.LABELED_ARCHIVE)
    dest = tmp_path / "data"
    assert fetch_data.main(["--dest", str(dest), "--source", str(shared)]) == 0
    for name in (data.LABELED_ARCHIVE, data.WORD_INDEX_FILE):
        assert (dest / name).read_bytes() == (shared / name).read_bytes()
    for name in cad.SPLIT_FILES.values():
        assert (dest / "cad" / name).read_bytes() == (shared / "cad" / name).read_bytes()
    assert sorted(path.name for path in dest.iterdir()) == [data.LABELED_ARCHIVE, "cad", data.WORD_INDEX_FILE]
    assert "copied from" in capsys.readouterr().out
    assert fetch_data.main(["--dest", str(dest), "--source", str(shared)]) == 0
    assert capsys.readouterr().out.count("already there") == 4


def test_make_data_refuses_a_shared_word_index_with_another_checksum(tmp_path, published, monkeypatch, capsys):
    shared = published(tmp_path / "shared")
    monkeypatch.setitem(data.MD5, data.WORD_INDEX_FILE, "0" * 32)
    dest = tmp_path / "data"
    assert fetch_data.main(["--dest", str(dest), "--source", str(shared)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "imdb_word_index.json: md5" in error and "deleted" in error
    assert sorted(path.name for path in dest.iterdir()) == [data.OFFICIAL_ARCHIVE]  # no word index, no .part


def test_make_data_downloads_and_checks_when_there_is_no_shared_folder(tmp_path, loopback_server, published):
    root, url = loopback_server
    published(root)
    dest = tmp_path / "data"
    code = fetch_data.main(["--dest", str(dest), "--source", str(tmp_path / "no-shared"),
                            "--dataset-url", f"{url}/aclImdb_v1.tar.gz",
                            "--word-index-url", f"{url}/imdb_word_index.json", "--cad-url", f"{url}/cad/"])
    assert code == 0
    assert as_tuples(load_imdb(dest / "aclImdb_v1.tar.gz")) == expected_splits()
    assert (dest / "imdb_word_index.json").read_text() == '{"the": 1}'
    assert (dest / "cad" / "dev_paired.tsv").read_text().endswith("A dev review.\t1\n")
    assert sorted(path.name for path in dest.iterdir()) == [data.OFFICIAL_ARCHIVE, "cad", data.WORD_INDEX_FILE]


def test_make_data_deletes_a_download_with_a_bad_checksum_and_fails_in_one_line(tmp_path, loopback_server,
                                                                               published, monkeypatch, capsys):
    root, url = loopback_server
    published(root)
    monkeypatch.setitem(data.MD5, data.OFFICIAL_ARCHIVE, "0" * 32)
    dest = tmp_path / "data"
    code = fetch_data.main(["--dest", str(dest), "--source", str(tmp_path / "no-shared"),
                            "--dataset-url", f"{url}/aclImdb_v1.tar.gz",
                            "--word-index-url", f"{url}/imdb_word_index.json"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {url}/aclImdb_v1.tar.gz: md5 ")
    assert list(dest.iterdir()) == []


def test_make_data_fails_in_one_line_when_nothing_can_be_downloaded(tmp_path, loopback_server, capsys):
    _, url = loopback_server
    code = fetch_data.main(["--dest", str(tmp_path / "data"), "--source", str(tmp_path / "no-shared"),
                            "--dataset-url", f"{url}/missing.tar.gz"])
    assert code == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_make_data_fills_the_folder_the_setting_names(tmp_path):
    folder = put_data(tmp_path / "imdb")
    (folder / "cad").mkdir()
    for name in cad.SPLIT_FILES.values():
        (folder / "cad" / name).write_text("Sentiment\tText\tbatch_id\n")
    result = subprocess.run(["make", "--no-print-directory", "data", f"IMDB_DATA_DIR={folder}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"{folder}/") == 4 and result.stdout.count("already there") == 4
