"""The committed behavioural suite (training/checklist.jsonl): what training/checklist.py writes, large,
balanced and short enough to read, and checked by `python -m training.checklist --check`."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from tests.conftest import REPO_ROOT
from training.checklist import CATEGORIES, DEFAULT_PATH, ChecklistItem, generate, load_checklist, render

MIN_ITEMS = 300
MIN_PER_CATEGORY = 30
POSITIVE_SHARE = (0.35, 0.65)  # per category
MAX_WORDS = 40


@pytest.fixture(scope="module")
def suite() -> list[ChecklistItem]:
    return load_checklist()


def run_check(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.checklist", "--check", "--path", str(path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_the_committed_suite_is_what_the_generator_writes():
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render(generate())


def test_the_generator_writes_the_same_suite_every_time():
    assert generate() == generate()


def test_the_suite_has_at_least_300_distinct_texts_and_no_duplicate(suite):
    texts = [item.text for item in suite]
    assert len(set(texts)) >= MIN_ITEMS
    assert [text for text, count in Counter(texts).items() if count > 1] == []


def test_every_category_is_present_with_at_least_30_items(suite):
    counts = Counter(item.category for item in suite)
    assert set(counts) == set(CATEGORIES)
    assert {category: count for category, count in counts.items() if count < MIN_PER_CATEGORY} == {}


def test_labels_are_0_or_1_and_each_category_is_between_35_and_65_percent_positive(suite):
    assert {item.label for item in suite} == {0, 1}
    for category in CATEGORIES:
        labels = [item.label for item in suite if item.category == category]
        low, high = POSITIVE_SHARE
        assert low <= sum(labels) / len(labels) <= high, category


def test_every_review_filled_from_one_template_has_that_templates_label(suite):
    labels_by_template = {}
    for item in suite:
        labels_by_template.setdefault((item.category, item.template), set()).add(item.label)
    assert {key: labels for key, labels in labels_by_template.items() if len(labels) > 1} == {}


def test_every_text_is_short_filled_and_stripped(suite):
    for item in suite:
        assert 1 <= len(item.text.split()) <= MAX_WORDS, item.text
        assert item.text == item.text.strip() and "{" not in item.text and "}" not in item.text, item.text


def test_load_checklist_round_trips(suite, tmp_path):
    path = tmp_path / "checklist.jsonl"
    path.write_text(render(suite), encoding="utf-8")
    assert load_checklist(path) == suite
    assert all(isinstance(item, ChecklistItem) for item in suite)


def test_check_passes_on_the_committed_file():
    result = run_check(DEFAULT_PATH)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("tamper", ["flip a label", "drop the last line", "missing file"])
def test_check_fails_with_one_line_on_a_tampered_copy(tmp_path, tamper):
    path = tmp_path / "checklist.jsonl"
    lines = DEFAULT_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    if tamper == "flip a label":
        first = json.loads(lines[0])
        lines[0] = json.dumps({**first, "label": 1 - first["label"]}) + "\n"
        path.write_text("".join(lines), encoding="utf-8")
    elif tamper == "drop the last line":
        path.write_text("".join(lines[:-1]), encoding="utf-8")
    result = run_check(path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and str(path) in result.stderr


def test_the_generator_writes_the_file_that_check_accepts(tmp_path):
    path = tmp_path / "checklist.jsonl"
    written = subprocess.run([sys.executable, "-m", "training.checklist", "--path", str(path)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0
    assert path.read_text(encoding="utf-8") == DEFAULT_PATH.read_text(encoding="utf-8")
    assert run_check(path).returncode == 0
