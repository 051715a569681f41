"""A behavioural test suite for sentiment models, in the style of CheckList (Ribeiro et al., ACL 2020).

    python -m training.checklist            # (re)writes training/checklist.jsonl
    python -m training.checklist --check    # exits 1 if the committed file is not what this module writes

Test accuracy on IMDB says how often a model is right on reviews like its training reviews; it does not say
which kinds of sentence it gets wrong. This suite is a few hundred short English reviews, each with the
label a reader would give it, grouped by the linguistic capability it probes, so a model's accuracy can be
read per category ("it ignores negation", "it breaks on typos").

How it was built: written blind. The templates and word lists below were chosen from ordinary English
(common review words, everyday constructions), before and without looking at any model's scores, and the
suite was never edited to follow a model's mistakes; no model is loaded here. Each template is filled
with words drawn from its slot lists by a random generator seeded from the template's own text, so the
output is deterministic and editing one template does not reshuffle the others.

Categories:

* ``negation``: negated positive words read negative ("The plot was not interesting.", "I didn't like
  this film.", "It was never funny.", "neither ... nor", "nothing", "no"), negated negative words read
  positive, only where the review says so plainly ("Not boring at all, I loved it.", "The film was never
  dull."). Contractions (didn't, wasn't, isn't, don't, can't, won't, couldn't) and their full forms.
* ``contrast``: two clauses of opposite sentiment joined by "but", "although" or "however"; the final
  clause decides ("Great acting, but the movie was boring." is negative).
* ``intensity``: intensifiers and mild hedges on clear sentiment ("truly awful", "pretty good") and
  superlatives ("the worst movie I have ever seen").
* ``neutral_filler``: one clear sentiment sentence among neutral sentences (how the reviewer watched the
  film, facts about it: "It came out in 1998."); the neutral sentences must not move the label.
* ``typos``: clear reviews with realistic misspellings ("terible", "amazng", "this moive"), missing
  apostrophes ("I didnt like it") and stretched words ("sooo good").
* ``one_word``: reviews of one or two words, in several cases and punctuations ("Excellent.", "AWFUL",
  "Loved it!!!").
* ``movie_aspects``: sentences about one part of a film in its own vocabulary (a wooden performance,
  a predictable plot, a haunting score).

Labels: 1 positive, 0 negative. Each template carries one label, fixed when it was written by the logic
of the template (a negation template turns the polarity of its filler word; a contrast template takes
the polarity of its final clause), and every review filled from it has that label. Each positive
template has a negative mirror, so every category is close to half positive.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "checklist.jsonl"
SEED = 2020  # the year of the CheckList paper; any fixed value makes the output reproducible
ITEMS_PER_TEMPLATE = 6  # at most: a template with fewer distinct fillings gives fewer
DRAWS_PER_ITEM = 20  # random fillings tried per wanted item before a template is taken as exhausted
POSITIVE, NEGATIVE = 1, 0

# Slot fillers. A template names a slot by its list's key; "_2" names a second, different word of the same
# list; a capitalised slot ({Film}) starts with a capital letter and an upper-case one ({ONE_POS}) is all caps.
FILMS = ("the movie", "this movie", "the film", "this film")
ASPECTS = (
    "the acting", "the plot", "the script", "the soundtrack", "the cast", "the ending", "the story",
    "the director's work", "the dialogue", "the cinematography", "the music", "the screenplay",
)
# Adjectives that fit any subject above, and more that fit a whole film (a "funny soundtrack" does not).
POSITIVE_WORDS = (
    "good", "great", "wonderful", "excellent", "amazing", "brilliant", "superb", "fantastic", "outstanding",
    "terrific", "beautiful", "impressive", "lovely", "enjoyable",
)
NEGATIVE_WORDS = (
    "bad", "awful", "terrible", "horrible", "poor", "weak", "disappointing", "mediocre", "dreadful", "boring",
    "dull", "lousy",
)
FILM_POSITIVE_WORDS = POSITIVE_WORDS + (
    "fun", "moving", "entertaining", "funny", "gripping", "touching", "delightful", "charming",
)
FILM_NEGATIVE_WORDS = NEGATIVE_WORDS + ("stupid", "painful", "pointless", "tedious", "unwatchable", "forgettable")

SLOTS = {
    "film": FILMS,
    "aspect": ASPECTS,
    "subject": FILMS + ASPECTS,
    "pos": POSITIVE_WORDS,
    "neg": NEGATIVE_WORDS,
    "film_pos": FILM_POSITIVE_WORDS,
    "film_neg": FILM_NEGATIVE_WORDS,
    "loved": ("loved", "enjoyed", "adored"),
    "hated": ("hated", "disliked", "loathed", "despised"),
    # negation: only words whose negation is plainly the opposite ("not amazing" can still mean "good")
    "negatable": (
        "good", "interesting", "funny", "enjoyable", "entertaining", "fun", "worth watching", "any good",
        "engaging", "exciting",
    ),
    "negatable_aspect": ("good", "interesting", "any good", "impressive", "memorable"),
    "nothing_pos": ("good", "interesting", "memorable", "original", "special"),
    "neither_pos": ("funny", "interesting", "exciting", "original", "moving", "clever", "entertaining"),
    "negated_neg": ("bad", "boring", "dull", "disappointing"),
    "dull": ("boring", "dull", "slow", "tedious", "predictable"),
    "dull_moment": ("dull", "boring", "wasted"),
    "lack": ("suspense", "tension", "humour", "heart", "chemistry between the leads", "logic", "emotion"),
    "like": ("like", "enjoy"),
    # contrast
    "feature": (
        "acting", "music", "photography", "dialogue", "special effects", "costumes", "camera work",
        "performances",
    ),
    # intensity
    "intensifier": ("really", "truly", "so", "simply", "absolutely", "genuinely"),
    "adverb": ("really", "absolutely", "truly", "thoroughly"),
    "strong_pos": ("brilliant", "wonderful", "fantastic", "amazing", "superb", "magnificent", "stunning", "beautiful"),
    "strong_neg": ("awful", "terrible", "horrible", "dreadful", "appalling", "atrocious"),
    "hedge": ("quite", "pretty", "fairly", "rather"),
    "mild_pos": ("enjoyable", "entertaining", "good", "fun", "charming"),
    "mild_neg": ("boring", "dull", "bad", "disappointing", "tedious"),
    "best": ("best", "finest", "greatest", "most enjoyable", "most beautiful", "most moving"),
    "worst": ("worst", "dullest", "most boring", "most tedious", "most disappointing", "most pointless"),
    "film_noun": ("film", "movie"),
    # neutral filler, with no opinion in it: how the reviewer watched (one per review, so two never
    # contradict each other) and facts about the film
    "viewing": (
        "I watched this on a Sunday with my brother.", "I saw it at the cinema last week.", "My wife picked it.",
        "I rented it on a rainy evening.", "We went to the late show.", "It was on television last night.",
        "I borrowed the DVD from a friend.", "I watched the version with subtitles.", "I watched it on a plane.",
    ),
    "fact": (
        "It runs for about two hours.", "It came out in 1998.", "It is based on a novel.",
        "The story takes place in a small town in Ohio.", "It was filmed in Canada.",
        "The director also wrote the script.", "Most of it is in black and white.",
    ),
    # typos: misspellings people make, not random character edits
    "pos_typo": (
        "amazng", "amazin", "greatt", "wonderfull", "brillant", "excelent", "fantasic", "beatiful", "awsome",
        "enjoyible", "outstandng", "terrfic",
    ),
    "neg_typo": (
        "terible", "terrble", "borring", "boaring", "awfull", "aweful", "horible", "horrable", "dissapointing",
        "disapointing", "medicore", "dreadfull",
    ),
    "film_typo": ("this moive", "the moive", "this flim", "the flim", "this movei", "the fillm"),
    "stretched_pos": ("sooo good", "soooo good", "greeeat", "amaaazing", "sooo much fun", "sooo beautiful"),
    "stretched_neg": ("sooo bad", "soooo bad", "baaad", "sooo boring", "borrrring", "sooo dull"),
    # one or two words
    "one_pos": (
        "excellent", "wonderful", "brilliant", "masterpiece", "loved it", "great", "amazing", "superb",
        "fantastic", "highly recommended", "must see", "perfect", "outstanding", "beautiful", "magnificent",
        "stunning",
    ),
    "one_neg": (
        "awful", "terrible", "boring", "horrible", "dreadful", "garbage", "rubbish", "hated it", "avoid",
        "disappointing", "pathetic", "unwatchable", "dull", "total waste", "trash", "pointless",
    ),
    # movie aspects, in each aspect's own words; performance adjectives start with a consonant ("a ... performance")
    "performer": ("the lead actor", "the lead actress", "the villain", "the young star", "every actor"),
    "performance_pos": ("superb", "brilliant", "wonderful", "powerful", "convincing", "moving", "stunning", "terrific"),
    "performance_neg": ("weak", "wooden", "terrible", "lifeless", "dreadful", "poor", "bland", "lazy", "flat"),
    "story": ("the plot", "the story", "the storyline", "the script"),
    "plot_pos": ("clever", "gripping", "original", "engaging", "full of surprises", "well constructed"),
    "plot_neg": ("predictable", "confusing", "ridiculous", "full of holes", "a mess", "cliched"),
    "score": ("the music", "the soundtrack", "the score"),
    "music_pos": ("beautiful", "haunting", "memorable", "perfect for the film", "stirring"),
    "music_neg": ("annoying", "forgettable", "grating", "intrusive", "cheesy"),
    "direction": ("the direction", "the directing", "the director's work"),
    "direction_pos": ("confident", "stylish", "masterful", "assured", "inventive"),
    "direction_neg": ("clumsy", "sloppy", "lifeless", "amateurish", "heavy-handed"),
    "dialogue_pos": ("sharp", "witty", "natural", "clever", "smart"),
    "dialogue_neg": ("wooden", "clumsy", "cheesy", "awkward", "laughable"),
    "character_pos": ("believable", "likeable", "well drawn", "complex", "memorable"),
    "character_neg": ("flat", "annoying", "unlikeable", "one-dimensional", "paper thin"),
}

# (label, template) per category. Each label is the template's own logic, stated when it was written.
TEMPLATES: dict[str, tuple[tuple[int, str], ...]] = {
    "negation": (
        # a negated positive word is negative
        (NEGATIVE, "{Film} was not {negatable}."),
        (NEGATIVE, "{Aspect} was not {negatable_aspect}."),
        (NEGATIVE, "{Film} wasn't {negatable} at all."),
        (NEGATIVE, "{Aspect} isn't {negatable_aspect}."),
        (NEGATIVE, "I didn't {like} {film}."),
        (NEGATIVE, "I did not {like} {aspect}."),
        (NEGATIVE, "I don't think {film} was {negatable}."),
        (NEGATIVE, "{Film} was never {negatable}."),
        (NEGATIVE, "There was nothing {nothing_pos} about {subject}."),
        (NEGATIVE, "{Film} was neither {neither_pos} nor {neither_pos_2}."),
        (NEGATIVE, "There was no {lack} in {film}."),
        (NEGATIVE, "I can't recommend {film}."),
        (NEGATIVE, "I won't watch {film} again."),
        (NEGATIVE, "Nothing in {film} worked."),
        (NEGATIVE, "{Film} couldn't hold my attention."),
        # a negated negative word is positive, when the review says so plainly
        (POSITIVE, "Not {negated_neg} at all, I {loved} it."),
        (POSITIVE, "{Aspect} was not {negated_neg}; in fact it was {pos}."),
        (POSITIVE, "{Aspect} isn't {negated_neg} at all, it's {pos}."),
        (POSITIVE, "{Film} was never {dull}."),
        (POSITIVE, "There was nothing {dull} about {film}."),
        (POSITIVE, "{Film} was neither {dull} nor {dull_2}."),
        (POSITIVE, "There wasn't a single {dull_moment} moment in {film}."),
        (POSITIVE, "You won't regret watching {film}."),
        (POSITIVE, "I can't wait to watch {film} again."),
        (POSITIVE, "I have no complaints about {aspect}."),
        (POSITIVE, "No one should miss {film}."),
        (POSITIVE, "I couldn't take my eyes off {film}."),
        (POSITIVE, "I didn't want {film} to end."),
    ),
    "contrast": (
        # the final clause decides
        (NEGATIVE, "{Aspect} was {pos}, but {film} was {film_neg}."),
        (POSITIVE, "{Aspect} was {neg}, but {film} was {film_pos}."),
        (NEGATIVE, "{Pos} {feature}, but {film} was {film_neg}."),
        (POSITIVE, "{Neg} {feature}, but {film} was {film_pos}."),
        (NEGATIVE, "Although {aspect} was {pos}, {film} was {film_neg}."),
        (POSITIVE, "Although {aspect} was {neg}, {film} was {film_pos}."),
        (NEGATIVE, "The first half was {pos}, but the ending was {neg}."),
        (POSITIVE, "The first half was {neg}, but the ending was {pos}."),
        (NEGATIVE, "{Aspect} was {pos}; however, {film} was {film_neg}."),
        (POSITIVE, "{Aspect} was {neg}; however, {film} was {film_pos}."),
        (NEGATIVE, "I wanted to like {film}, but it was {film_neg}."),
        (POSITIVE, "I expected to hate {film}, but it was {film_pos}."),
        (NEGATIVE, "{Film} had {pos} moments, but overall it was {film_neg}."),
        (POSITIVE, "{Film} had {neg} moments, but overall it was {film_pos}."),
    ),
    "intensity": (
        (POSITIVE, "{Subject} was {intensifier} {strong_pos}."),
        (NEGATIVE, "{Subject} was {intensifier} {strong_neg}."),
        # hedges soften the sentiment without turning it
        (POSITIVE, "{Film} was {hedge} {mild_pos}."),
        (NEGATIVE, "{Film} was {hedge} {mild_neg}."),
        (POSITIVE, "I {adverb} {loved} {film}."),
        (NEGATIVE, "I {adverb} {hated} {film}."),
        (POSITIVE, "This is the {best} {film_noun} I have ever seen."),
        (NEGATIVE, "This is the {worst} {film_noun} I have ever seen."),
        (POSITIVE, "Easily the {best} {film_noun} of the year."),
        (NEGATIVE, "Easily the {worst} {film_noun} of the year."),
        (POSITIVE, "One of the {best} movies ever made."),
        (NEGATIVE, "One of the {worst} movies ever made."),
    ),
    "neutral_filler": (
        (POSITIVE, "{viewing} {Film} was {film_pos}. {fact}"),
        (NEGATIVE, "{viewing} {Film} was {film_neg}. {fact}"),
        (POSITIVE, "{viewing} {fact} I {loved} it."),
        (NEGATIVE, "{viewing} {fact} I {hated} it."),
        (POSITIVE, "{Aspect} was {pos}. {fact} {viewing}"),
        (NEGATIVE, "{Aspect} was {neg}. {fact} {viewing}"),
        (POSITIVE, "{viewing} {Aspect} was {pos}."),
        (NEGATIVE, "{viewing} {Aspect} was {neg}."),
        (POSITIVE, "{fact} {Film} was {film_pos}."),
        (NEGATIVE, "{fact} {Film} was {film_neg}."),
    ),
    "typos": (
        (POSITIVE, "{Film} was {pos_typo}."),
        (NEGATIVE, "{Film} was {neg_typo}."),
        (POSITIVE, "{Film_typo} was {film_pos}."),
        (NEGATIVE, "{Film_typo} was {film_neg}."),
        (POSITIVE, "{Film} was {stretched_pos}!"),
        (NEGATIVE, "{Film} was {stretched_neg}!"),
        (POSITIVE, "I realy {loved} {film}."),
        (NEGATIVE, "I realy {hated} {film}."),
        (POSITIVE, "Dont miss {film}, its {film_pos}."),
        (NEGATIVE, "Dont watch {film}, its {film_neg}."),
        (POSITIVE, "{Film} is definately worth watching."),
        (NEGATIVE, "{Film} is definately a waste of time."),
        (POSITIVE, "I loved {film}, its {pos_typo}."),
        (NEGATIVE, "I didnt like {film} at all."),
        (POSITIVE, "I cant wait to see {film} again."),
        (NEGATIVE, "I cant recommend {film}."),
    ),
    "one_word": (
        (POSITIVE, "{One_pos}."),
        (NEGATIVE, "{One_neg}."),
        (POSITIVE, "{One_pos}!"),
        (NEGATIVE, "{One_neg}!"),
        (POSITIVE, "{One_pos}"),
        (NEGATIVE, "{One_neg}"),
        (POSITIVE, "{one_pos}"),
        (NEGATIVE, "{one_neg}"),
        (POSITIVE, "{ONE_POS}"),
        (NEGATIVE, "{ONE_NEG}"),
        (POSITIVE, "{ONE_POS}!!!"),
        (NEGATIVE, "{ONE_NEG}!!!"),
    ),
    "movie_aspects": (
        (POSITIVE, "{Performer} gave a {performance_pos} performance."),
        (NEGATIVE, "{Performer} gave a {performance_neg} performance."),
        (POSITIVE, "{Story} was {plot_pos}."),
        (NEGATIVE, "{Story} was {plot_neg}."),
        (POSITIVE, "{Score} was {music_pos}."),
        (NEGATIVE, "{Score} was {music_neg}."),
        (POSITIVE, "{Direction} was {direction_pos}."),
        (NEGATIVE, "{Direction} was {direction_neg}."),
        (POSITIVE, "The dialogue in {film} was {dialogue_pos}."),
        (NEGATIVE, "The dialogue in {film} was {dialogue_neg}."),
        (POSITIVE, "The characters in {film} were {character_pos}."),
        (NEGATIVE, "The characters in {film} were {character_neg}."),
    ),
}
CATEGORIES = tuple(TEMPLATES)


@dataclass(frozen=True)
class ChecklistItem:
    text: str
    label: int  # 1 positive, 0 negative
    category: str
    template: str


def slot_fields(template: str) -> list[str]:
    """The slot names of a template, each once, in order of appearance."""
    return list(dict.fromkeys(field for _, field, _, _ in string.Formatter().parse(template) if field))


def slot_list(field: str) -> str:
    """The key in SLOTS of a slot name: {Film} and {film_2} are both drawn from "film"."""
    return re.sub(r"_\d+$", "", field.lower())


def in_case_of(field: str, word: str) -> str:
    """The word in the case the slot name is written in: {ONE_POS} -> "LOVED IT", {Film} -> "The movie"."""
    if field.isupper():
        return word.upper()
    return word[0].upper() + word[1:] if field[0].isupper() else word


def fill(template: str, rng: random.Random) -> str:
    by_list: dict[str, list[str]] = {}
    for field in slot_fields(template):
        by_list.setdefault(slot_list(field), []).append(field)
    values = {}
    for key, names in by_list.items():
        # Slots drawn from one list ({dull} nor {dull_2}) get different words.
        for name, word in zip(names, rng.sample(SLOTS[key], len(names)), strict=True):
            values[name] = in_case_of(name, word)
    return template.format(**values)


def fillings(template: str, seen: set[str]) -> list[str]:
    """Up to ITEMS_PER_TEMPLATE distinct texts from one template, none already in ``seen`` (which grows)."""
    # Seeded by the template's text (str seeds are hashed with sha512, the same in every process), so
    # adding or editing one template leaves every other template's texts as they were.
    rng = random.Random(f"{SEED}:{template}")
    texts: list[str] = []
    for _ in range(ITEMS_PER_TEMPLATE * DRAWS_PER_ITEM):
        text = fill(template, rng)
        if text not in seen:
            seen.add(text)
            texts.append(text)
            if len(texts) == ITEMS_PER_TEMPLATE:
                break
    return sorted(texts)


def generate() -> list[ChecklistItem]:
    """The whole suite, by category and template in the order written above."""
    seen: set[str] = set()
    return [
        ChecklistItem(text, label, category, template)
        for category, templates in TEMPLATES.items()
        for label, template in templates
        for text in fillings(template, seen)
    ]


def render(items: list[ChecklistItem]) -> str:
    return "".join(json.dumps(asdict(item)) + "\n" for item in items)


def load_checklist(path: Path = DEFAULT_PATH) -> list[ChecklistItem]:
    return [ChecklistItem(**json.loads(line)) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="the suite's JSON-lines file")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    items = generate()
    expected = render(items)
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.is_file() else None
        if current != expected:
            print(f"{args.path} is not what training/checklist.py writes; run python -m training.checklist",
                  file=sys.stderr)
            return 1
        return 0
    args.path.write_text(expected, encoding="utf-8")
    print(f"{args.path}: {len(items)} reviews in {len(CATEGORIES)} categories", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
