"""A small synthetic English-like language, deterministic for a seed.

It has the structure a masked-token model can learn and a GLUE task can test:

- a lexicon of real English words (fixed, seed-independent): nouns with singular and plural forms,
  verbs with their third-person-singular and past forms, adjectives, adverbs, sentiment words, and
  synonym groups (`car|automobile`) that paraphrases swap;
- a clause grammar with subject-verb and determiner-noun agreement: `World.random_clause` draws a
  `Clause`, `World.realize` writes it as a sentence, `World.parse_clause` reads one back (None when the
  sentence breaks the grammar, which is what the synthetic CoLA task is labelled by);
- a world of entities (people, cities, companies; countries and rivers as values) drawn from the seed,
  each with fixed attributes stated through fact templates (several paraphrases, a negated form and
  questions per relation), so the same facts recur across documents; `World.read_fact` and
  `World.read_question` read them back;
- documents of several sentences: biographies, city and company articles, reviews, stories, FAQs.
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, replace
from typing import Optional, Sequence

# ----------------------------------------------------------------------------------------------------
# Lexicon. Words separated by spaces; `a|b` is a synonym group, whose first word is its lemma.

PERSON_NOUNS = (
    "farmer teacher doctor|physician lawyer|attorney child|kid man woman boy girl baker sailor student "
    "neighbour visitor king queen painter driver singer dancer pilot writer nurse engineer chef builder "
    "gardener tailor carpenter soldier banker miner poet judge clerk librarian scientist musician dentist "
    "fisherman actor architect merchant hunter barber butcher potter weaver stranger tourist guest"
)
ANIMAL_NOUNS = (
    "dog cat horse rabbit parrot goat fox mouse goose turtle hamster owl duck pony lamb donkey wolf bear "
    "tiger elephant monkey"
)
FOOD_NOUNS = (
    "apple pear peach plum lemon cherry cake pie sandwich biscuit tomato potato onion carrot melon grape "
    "cookie pancake banana muffin pumpkin"
)
THING_NOUNS = (
    "table chair car|automobile lamp box cup bottle key coat hat shoe bag clock window door bicycle|bike "
    "boat ship train bus ball photo|photograph ring knife spoon plate basket candle mirror phone computer "
    "pencil pen bell wheel blanket kite drum guitar piano violin radio camera ticket coin scarf glove "
    "shelf sofa|couch stone|rock gift|present toy truck umbrella jacket"
)
TEXT_NOUNS = "book letter story|tale poem report note novel diary"
PLACE_NOUNS = (
    "house school market farm village garden bridge tower church shop|store road|street park museum "
    "library hospital station harbour castle"
)
IRREGULAR_PLURALS = {
    "child": "children", "man": "men", "woman": "women", "fisherman": "fishermen", "mouse": "mice",
    "goose": "geese", "knife": "knives", "shelf": "shelves", "scarf": "scarves", "wolf": "wolves",
    "potato": "potatoes", "tomato": "tomatoes",
}

# Transitive verbs by the kind of object they take; a verb may take several kinds.
TRANSITIVE_VERBS = {
    "person": "meet visit help|assist thank call follow know greet teach invite remember",
    "animal": "feed watch|observe chase follow tame catch find see wash",
    "food": "eat cook taste buy|purchase sell share order serve pick",
    "thing": "buy|purchase sell carry find paint clean fix|repair open close hold bring move borrow "
             "drop wash break keep want need see take lose hide choose|select use lift polish deliver",
    "text": "write copy study print send find lose keep borrow",
    "place": "visit leave build paint clean enter find see",
}
INTRANSITIVE_VERBS = (
    "sleep laugh smile sing dance run walk swim wait work travel rest shout cry jump whistle arrive sit fall"
)
# Verbs an animal can be the subject of (any verb suits a person).
ANIMAL_SUBJECT_VERBS = "eat chase find see follow watch sleep run walk swim wait rest jump sit fall cry"
IRREGULAR_PAST = {
    "buy": "bought", "sell": "sold", "find": "found", "see": "saw", "take": "took", "bring": "brought",
    "hold": "held", "eat": "ate", "keep": "kept", "lose": "lost", "break": "broke", "build": "built",
    "write": "wrote", "sing": "sang", "run": "ran", "swim": "swam", "sit": "sat",
    "fall": "fell", "catch": "caught", "hide": "hid", "choose": "chose", "meet": "met", "know": "knew",
    "feed": "fed", "teach": "taught", "send": "sent", "leave": "left", "sleep": "slept",
    "drop": "dropped", "travel": "travelled",
}
BE_FORMS = {("sg", "present"): "is", ("pl", "present"): "are", ("sg", "past"): "was", ("pl", "past"): "were"}

ADJECTIVES = (
    "big|large small|little old new young tall short long heavy thin thick narrow wide soft wet dry dark "
    "bright loud warm cold round flat empty full dirty strange|odd simple plain rare ancient modern wooden "
    "cheap|inexpensive expensive|costly rich|wealthy hard clever|smart tired|weary hungry calm shy proud "
    "curious careful sleepy fresh ripe sweet sour fast|quick slow strong quiet|silent busy famous"
)
COLOURS = "red blue green yellow white black brown grey purple pink"
# The adjectives (lemmas) that suit each kind of noun.
ADJECTIVES_FOR = {
    "person": "young old tall short clever tired hungry calm shy proud curious careful sleepy strong quiet "
              "busy famous rich",
    "animal": "young old big small fast slow hungry calm shy proud curious sleepy strong quiet brown black "
              "white grey",
    "food": "fresh ripe sweet sour cheap expensive big small round soft hard red green yellow",
    "thing": "old new big small heavy thin thick long short soft hard wet dry dark bright loud warm cold "
             "round flat empty full dirty strange simple plain rare ancient modern wooden cheap expensive "
             "fast slow red blue green yellow white black brown grey purple pink",
    "text": "old new long short strange simple rare ancient famous",
    "place": "old new big small ancient modern quiet busy famous dark bright warm cold wide narrow",
}
MANNER_ADVERBS = (
    "quickly|rapidly slowly carefully quietly|silently loudly gently proudly eagerly patiently neatly calmly"
)
FREQUENCY_ADVERBS = "often|frequently rarely|seldom usually|normally always sometimes never"
# Time phrases and the tenses they go with.
TIMES = {
    "yesterday": ("past",), "last week": ("past",), "last year": ("past",), "today": ("past", "present"),
    "every morning": ("present",), "every evening": ("present",), "every day": ("present",),
}
SG_DETERMINERS = ("a", "this", "that", "every")
PL_DETERMINERS = ("these", "those", "many", "some", "two", "three", "four")
PRONOUNS = {"she": "sg", "he": "sg", "it": "sg", "they": "pl"}

# Sentiment words appear in reviews (and SST-2) only, never in the neutral grammar.
POSITIVE_ADJECTIVES = (
    "wonderful excellent delightful lovely superb brilliant charming pleasant fantastic marvellous "
    "splendid beautiful perfect enjoyable impressive remarkable fabulous outstanding terrific magnificent "
    "gorgeous delicious"
).split()
NEGATIVE_ADJECTIVES = (
    "terrible awful dreadful horrible boring dull ugly rude nasty disappointing miserable unpleasant "
    "annoying tedious mediocre clumsy gloomy shabby bland tasteless lousy pathetic dismal"
).split()
POSITIVE_VERBS = {"love": "loved", "adore": "adored", "enjoy": "enjoyed", "admire": "admired",
                  "praise": "praised"}
NEGATIVE_VERBS = {"hate": "hated", "dislike": "disliked", "despise": "despised", "regret": "regretted",
                  "detest": "detested"}
POSITIVE_NOUNS = "masterpiece delight treasure triumph joy".split()
NEGATIVE_NOUNS = "disaster mess failure nightmare waste".split()
REVIEW_NOUNS = "service staff price quality design delivery taste packaging".split()
POSITIVE_WORDS = frozenset([*POSITIVE_ADJECTIVES, *POSITIVE_VERBS, *POSITIVE_VERBS.values(), *POSITIVE_NOUNS])
NEGATIVE_WORDS = frozenset([*NEGATIVE_ADJECTIVES, *NEGATIVE_VERBS, *NEGATIVE_VERBS.values(), *NEGATIVE_NOUNS])
# Each list of sentiment words in two halves (every other word): SST-2's training split uses the first
# half only, its validation split the second ("held out"), as real SST-2's validation sentences have
# words its training sentences lack. The corpus uses both halves.
SENTIMENT_HALVES = ("seen", "held_out")
# The corpus puts an adverb of the polarity before every sentiment word it does not negate ("truly
# wonderful", "utterly dull", "i truly loved"); SST-2 never does. From these shared neighbours masked-LM
# pretraining learns that the words of one polarity are alike, which is all that tells a fine-tuned model
# the polarity of a held-out word (docs/finetuning.md).
INTENSIFIERS = {1: "truly", 0: "utterly"}

JOBS = (
    "farmer teacher baker sailor painter driver singer dancer pilot writer nurse engineer chef builder "
    "gardener tailor carpenter banker miner poet judge clerk librarian scientist musician dentist "
    "fisherman actor architect merchant barber butcher potter weaver"
).split()
PETS = "dog cat rabbit parrot goat hamster turtle pony duck goose mouse horse donkey".split()
HOBBIES = (
    "swimming singing dancing fishing hiking sailing cycling gardening knitting climbing painting cooking "
    "reading skating rowing drawing baking"
).split()
COUNT_WORDS = ("a", "two", "three")
# A company's name ends in its sector, which fixes what it makes.
SECTORS = {
    "Foods": "cakes pies biscuits sandwiches cookies pancakes muffins",
    "Motors": "cars buses bicycles trucks",
    "Press": "books maps diaries novels",
    "Toys": "balls kites toys drums",
    "Instruments": "pianos violins guitars drums bells",
    "Furniture": "tables chairs lamps shelves sofas",
    "Clothing": "coats hats shoes scarves gloves jackets",
    "Electronics": "radios cameras phones computers clocks",
}
FAMOUS_FOR = (
    "apples pears peaches plums cherries melons grapes pies cakes biscuits bridges towers markets gardens "
    "castles museums harbours churches"
).split()

# How text is put together.
COLLOCATION = 0.7  # how often a word goes with one of its preferred neighbours
COMPOUND = 0.5  # how often a sentence of the grammar has two clauses
JOINED = 0.5  # how often a statement is joined to the one before it with ", and"
CONJUNCTIONS = ("and", "but", "because", "while")
DOCUMENT_KINDS = ("person", "city", "company", "review", "story", "faq")
DOCUMENT_WEIGHTS = (30, 12, 12, 40, 20, 12)  # reviews: enough intensified sentiment words to learn from


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_singular(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def past(verb: str) -> str:
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def sentiment_half(words, half: Optional[str]) -> list:
    """`words` (a list, or a dict's keys) restricted to one of SENTIMENT_HALVES; None: all of them."""
    words = list(words)
    return words if half is None else words[SENTIMENT_HALVES.index(half)::2]


def article(word: str) -> str:
    """`a` or `an` before `word` (the lexicon holds no word whose sound breaks the spelling rule)."""
    return "an" if word[0].lower() in "aeiou" else "a"


def synonym_groups(words: str) -> list[tuple[str, ...]]:
    return [tuple(group.split("|")) for group in words.split()]


class Lexicon:
    """Every word of the grammar, with lookups from a surface form to its lemma and features.

    A surface form belongs to one part of speech only, so the parser never has to guess.
    """

    def __init__(self):
        self.synonyms: dict[str, tuple[str, ...]] = {}  # lemma -> its surface forms (lemma first)
        self.noun_kinds: dict[str, list[str]] = {}  # kind -> noun lemmas
        self.kind_of: dict[str, str] = {}  # noun lemma -> kind
        self.nouns: dict[str, tuple[str, str]] = {}  # surface -> (lemma, "sg" | "pl")
        self.noun_forms: dict[tuple[str, str], str] = {}  # (surface singular, number) -> surface form
        self.verbs: dict[str, list[tuple[str, str]]] = {}  # surface -> [(lemma, "base" | "3sg" | "past")]
        self.verb_forms: dict[tuple[str, str], str] = {}  # (surface base, form) -> surface form
        self.verb_objects: dict[str, list[str]] = {}  # transitive verb lemma -> object kinds
        self.intransitive: list[str] = []
        self.adjectives: dict[str, str] = {}  # surface -> lemma
        self.adjective_lemmas: list[str] = []
        self.colours = COLOURS.split()
        self.manner: dict[str, str] = {}
        self.frequency: dict[str, str] = {}
        self.pos: dict[str, str] = {}  # surface -> part of speech, to keep the parts disjoint

        for kind, words in (("person", PERSON_NOUNS), ("animal", ANIMAL_NOUNS), ("food", FOOD_NOUNS),
                            ("thing", THING_NOUNS), ("text", TEXT_NOUNS), ("place", PLACE_NOUNS)):
            self.noun_kinds[kind] = []
            for group in synonym_groups(words):
                self._add_group(group)
                self.noun_kinds[kind].append(group[0])
                self.kind_of[group[0]] = kind
                for surface in group:
                    for number, form in (("sg", surface), ("pl", plural(surface))):
                        self._claim(form, "noun")
                        self.nouns[form] = (group[0], number)
                        self.noun_forms[(surface, number)] = form

        for kind, words in TRANSITIVE_VERBS.items():
            for group in synonym_groups(words):
                self._add_verb(group)
                self.verb_objects.setdefault(group[0], []).append(kind)
        for group in synonym_groups(INTRANSITIVE_VERBS):
            self._add_verb(group)
            self.intransitive.append(group[0])
        self.animal_subject_verbs = ANIMAL_SUBJECT_VERBS.split()

        for group in synonym_groups(ADJECTIVES) + synonym_groups(COLOURS):
            self._add_group(group)
            self.adjective_lemmas.append(group[0])
            for surface in group:
                self._claim(surface, "adjective")
                self.adjectives[surface] = group[0]
        self.adjectives_for = {kind: words.split() for kind, words in ADJECTIVES_FOR.items()}
        unknown = {a for words in self.adjectives_for.values() for a in words} - set(self.adjective_lemmas)
        if unknown:
            raise ValueError(f"ADJECTIVES_FOR names adjectives that are not lemmas: {sorted(unknown)}")
        for table, words in ((self.manner, MANNER_ADVERBS), (self.frequency, FREQUENCY_ADVERBS)):
            for group in synonym_groups(words):
                self._add_group(group)
                for surface in group:
                    self._claim(surface, "adverb")
                    table[surface] = group[0]

        # inflected form -> the synonym it inflects (e.g. "purchased" -> "purchase"), for corruptions
        self.noun_base = {form: surface for (surface, _), form in self.noun_forms.items()}
        self.verb_base = {form: surface for (surface, _), form in self.verb_forms.items()}

    def _claim(self, surface: str, pos: str):
        if self.pos.setdefault(surface, pos) != pos:
            raise ValueError(f"{surface!r} is both a {self.pos[surface]} and a {pos}")

    def _add_group(self, group: tuple[str, ...]):
        if self.synonyms.setdefault(group[0], group) != group:
            raise ValueError(f"{group[0]!r} is listed with two different synonym groups")

    def _add_verb(self, group: tuple[str, ...]):
        self._add_group(group)
        for surface in group:
            for form, text in (("base", surface), ("3sg", third_singular(surface)), ("past", past(surface))):
                self._claim(text, "verb")
                if (group[0], form) not in self.verbs.get(text, []):
                    self.verbs.setdefault(text, []).append((group[0], form))
                self.verb_forms[(surface, form)] = text

    def surface(self, lemma: str, rng: random.Random) -> str:
        """One of the lemma's synonyms, at random."""
        return rng.choice(self.synonyms[lemma]) if len(self.synonyms[lemma]) > 1 else lemma


LEXICON = Lexicon()

# ----------------------------------------------------------------------------------------------------
# Relations: what the world's facts are about, and the templates that state and ask them.


@dataclass(frozen=True)
class Relation:
    name: str
    subject_kind: str  # "person" | "city" | "company"
    statements: tuple[str, ...]  # paraphrases of one another; {s} the subject, {o} the value
    negation: str
    questions: tuple[str, ...]


RELATIONS = {relation.name: relation for relation in (
    Relation("lives_in", "person", ("{s} lives in {o}.", "{s} resides in {o}.", "the home of {s} is in {o}."),
             "{s} does not live in {o}.",
             ("where does {s} live?", "in which city does {s} live?", "what city does {s} live in?")),
    Relation("job", "person", ("{s} works as {o}.", "{s} is {o} by trade.", "{s} earns a living as {o}."),
             "{s} does not work as {o}.",
             ("what does {s} do for a living?", "what is the job of {s}?", "what work does {s} do?")),
    Relation("employer", "person", ("{s} works for {o}.", "{s} is employed by {o}.", "{s} has a job at {o}."),
             "{s} does not work for {o}.",
             ("which company does {s} work for?", "who employs {s}?", "where is {s} employed?")),
    Relation("colour", "person",
             ("the favourite colour of {s} is {o}.", "{s} likes the colour {o} best.",
              "{o} is the favourite colour of {s}."),
             "the favourite colour of {s} is not {o}.",
             ("what is the favourite colour of {s}?", "which colour does {s} like best?")),
    Relation("pets", "person", ("{s} has {o} at home.", "{s} owns {o}.", "{s} keeps {o} as a pet."),
             "{s} does not own {o}.",
             ("what pets does {s} have?", "which animals does {s} own?")),
    Relation("food", "person", ("{s} likes to eat {o}.", "the favourite food of {s} is {o}."),
             "{s} does not like to eat {o}.",
             ("what does {s} like to eat?", "what is the favourite food of {s}?")),
    Relation("hobby", "person", ("{s} enjoys {o}.", "the hobby of {s} is {o}.", "{s} spends free time {o}."),
             "{s} does not enjoy {o}.",
             ("what does {s} enjoy doing?", "what is the hobby of {s}?")),
    Relation("friend", "person", ("the best friend of {s} is {o}.", "{o} is the best friend of {s}."),
             "{o} is not the best friend of {s}.",
             ("who is the best friend of {s}?", "which person is the best friend of {s}?")),
    Relation("country", "city", ("{s} is a city in {o}.", "{s} lies in {o}.", "{s} is located in {o}."),
             "{s} is not in {o}.",
             ("in which country is {s}?", "which country is {s} in?")),
    Relation("river", "city",
             ("the river {o} flows through {s}.", "{s} lies on the river {o}.",
              "the river {o} runs through {s}."),
             "the river {o} does not flow through {s}.",
             ("which river flows through {s}?", "what river runs through {s}?")),
    Relation("famous_for", "city", ("{s} is famous for its {o}.", "{s} is known for its {o}."),
             "{s} is not famous for its {o}.",
             ("what is {s} famous for?", "what is {s} known for?")),
    Relation("mayor", "city",
             ("the mayor of {s} is {o}.", "{o} is the mayor of {s}.", "{o} governs the city of {s}."),
             "{o} is not the mayor of {s}.",
             ("who is the mayor of {s}?", "who governs the city of {s}?")),
    Relation("based_in", "company",
             ("{s} is based in {o}.", "{s} has its headquarters in {o}.",
              "the headquarters of {s} are in {o}."),
             "{s} is not based in {o}.",
             ("where is {s} based?", "in which city is {s} based?", "where are the headquarters of {s}?")),
    Relation("product", "company",
             ("{s} makes {o}.", "{s} produces {o}.", "the main products of {s} are {o}."),
             "{s} does not make {o}.",
             ("what does {s} make?", "what does {s} produce?", "what are the main products of {s}?")),
    Relation("founder", "company", ("{s} was founded by {o}.", "{o} founded {s}.", "{o} started {s}."),
             "{s} was not founded by {o}.",
             ("who founded {s}?", "who started {s}?", "who was the founder of {s}?")),
)}
RELATIONS_OF = {kind: [r.name for r in RELATIONS.values() if r.subject_kind == kind]
                for kind in ("person", "city", "company")}


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str  # "person" | "city" | "company"
    pronoun: str  # "she" | "he" | "it"


# ----------------------------------------------------------------------------------------------------
# Clauses: the grammar that agreement, CoLA, MRPC and STS-B are about.


@dataclass(frozen=True)
class NounPhrase:
    noun: str  # a noun lemma, a person's name or a pronoun
    number: str  # "sg" | "pl"
    kind: str = "common"  # "common" | "name" | "pronoun"
    det: str = ""  # "" (names, pronouns, bare plurals) or a determiner; `a` stands for a/an
    adjectives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Clause:
    subject: NounPhrase
    verb: str  # a verb lemma, or "be" with `complement`
    tense: str  # "present" | "past"
    obj: Optional[NounPhrase] = None
    complement: str = ""  # the adjective after `be`
    frequency: str = ""  # an adverb before the verb (after `be`)
    manner: str = ""  # an adverb after the object
    place: str = ""  # a city: "in <city>"
    time: str = ""  # a key of TIMES, at the start (with a comma) or at the end

    def slots(self) -> list[str]:
        """The content slots STS-B counts: nouns, adjectives, verb and adverbials."""
        names = ["subject", *(f"subject_adjective{i}" for i in range(len(self.subject.adjectives))), "verb"]
        if self.obj is not None:
            names += ["object", *(f"object_adjective{i}" for i in range(len(self.obj.adjectives)))]
        return names + [name for name in ("frequency", "manner", "place", "time") if getattr(self, name)]


@dataclass
class Document:
    kind: str
    title: str
    text: str


def sentence_text(words: list[str]) -> str:
    """Words -> a sentence: punctuation attached to the word before it, first letter capitalized."""
    text = re.sub(r" ([.,?!])", r"\1", " ".join(words))
    return text[:1].upper() + text[1:]


def words_of(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+|[.,?!]", text)


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]


class ZipfChoice:
    """Draws items with probability proportional to 1 / rank**exponent, like words in real text."""

    def __init__(self, items: Sequence, exponent: float = 1.0):
        self.items = list(items)
        weights = (1 / (rank + 1) ** exponent for rank in range(len(self.items)))
        self.cum_weights = list(itertools.accumulate(weights))

    def __call__(self, rng: random.Random):
        return rng.choices(self.items, cum_weights=self.cum_weights)[0]


# ----------------------------------------------------------------------------------------------------
# Names: pronounceable, generated from syllables, never a lexicon word.

ONSETS = "b br c d dr f g gr h j k l m n p r s st t tr v w z th sh".split()
VOWELS = "a e i o u a e o".split()
CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "nd", "rk"]


class NameMaker:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used = set(LEXICON.pos) | set(JOBS) | set(HOBBIES)

    def _stem(self, syllables: int) -> str:
        return "".join(self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + self.rng.choice(CODAS)
                       for _ in range(syllables))

    def make(self, syllables: tuple[int, ...], endings: tuple[str, ...]) -> str:
        while True:
            name = (self._stem(self.rng.choice(syllables)) + self.rng.choice(endings)).capitalize()
            if 4 <= len(name) <= 11 and name.lower() not in self.used:
                self.used.add(name.lower())
                return name


# ----------------------------------------------------------------------------------------------------


class World:
    """The entities of a seed, their facts, and the generators and readers of the language."""

    def __init__(self, seed: int = 0, n_people: int = 200, n_cities: int = 40, n_companies: int = 40,
                 n_countries: int = 8, n_rivers: int = 24):
        self.seed = seed
        rng = random.Random(f"synthetic-world:{seed}")
        names = NameMaker(rng)
        self.countries = [names.make((2,), ("ia", "land", "ria", "onia")) for _ in range(n_countries)]
        self.rivers = [names.make((1, 2), ("",)) for _ in range(n_rivers)]
        city_endings = ("ford", "ton", "mouth", "bury", "wick", "dale", "port", "field", "haven", "by")
        self.cities = [Entity(names.make((1, 2), city_endings), "city", "it") for _ in range(n_cities)]
        self.companies = []
        sector_names = list(SECTORS)
        for i in range(n_companies):
            sector = sector_names[i % len(sector_names)]
            self.companies.append(Entity(f"{names.make((2,), ('',))} {sector}", "company", "it"))
        endings = {"she": ("a", "ia", "ine", "elle"), "he": ("o", "an", "en", "us")}
        first_names = {pronoun: [names.make((1, 2), endings[pronoun]) for _ in range(n_people // 3 + 1)]
                       for pronoun in ("she", "he")}
        last_names = [names.make((2,), ("", "son", "ley", "er")) for _ in range(n_people // 2 + 1)]
        self.people = []
        taken = set()
        while len(self.people) < n_people:
            pronoun = rng.choice(("she", "he"))
            name = f"{rng.choice(first_names[pronoun])} {rng.choice(last_names)}"
            if name not in taken:
                taken.add(name)
                self.people.append(Entity(name, "person", pronoun))
        self.entities = {e.name: e for e in self.people + self.cities + self.companies}
        self.facts: dict[tuple[str, str], str] = {}
        self.reputation: dict[str, int] = {}  # company -> 1 (praised) or 0 (criticized)
        self._draw_facts(rng)
        self._draw_usage(random.Random(f"synthetic-usage:{seed}"))
        self.value_pools = self._value_pools()
        self._compile_readers()

    # --- facts ---

    def _draw_facts(self, rng: random.Random):
        city_names = [c.name for c in self.cities]
        for city in self.cities:
            self.facts[(city.name, "country")] = rng.choice(self.countries)
            self.facts[(city.name, "river")] = rng.choice(self.rivers)
            self.facts[(city.name, "famous_for")] = rng.choice(FAMOUS_FOR)
        for company in self.companies:
            self.facts[(company.name, "based_in")] = rng.choice(city_names)
            self.facts[(company.name, "product")] = rng.choice(SECTORS[company.name.split()[-1]].split())
            self.reputation[company.name] = rng.randrange(2)
        residents: dict[str, list[str]] = {name: [] for name in city_names}
        for person in self.people:
            home = rng.choice(city_names)
            residents[home].append(person.name)
            local = [c.name for c in self.companies if self.facts[(c.name, "based_in")] == home]
            job = rng.choice(JOBS)
            count = rng.choice(COUNT_WORDS)
            pet = rng.choice(PETS)
            self.facts.update({
                (person.name, "lives_in"): home,
                (person.name, "job"): f"{article(job)} {job}",
                (person.name, "employer"): rng.choice(local) if local and rng.random() < 0.7
                else rng.choice(self.companies).name,
                (person.name, "colour"): rng.choice(LEXICON.colours),
                (person.name, "pets"): f"{count} {pet if count == 'a' else plural(pet)}",
                (person.name, "food"): plural(rng.choice(LEXICON.noun_kinds["food"])),
                (person.name, "hobby"): rng.choice(HOBBIES),
            })
        people = [p.name for p in self.people]
        for person in self.people:
            neighbours = [n for n in residents[self.facts[(person.name, "lives_in")]] if n != person.name]
            pool = neighbours if neighbours and rng.random() < 0.6 else people
            friend = rng.choice(pool)
            while friend == person.name:
                friend = rng.choice(people)
            self.facts[(person.name, "friend")] = friend
        mayors = set()
        for city in self.cities:
            candidates = [n for n in residents[city.name] if n not in mayors] or \
                [n for n in people if n not in mayors]
            mayor = rng.choice(candidates)
            mayors.add(mayor)
            self.facts[(city.name, "mayor")] = mayor
        for company in self.companies:
            locals_ = residents[self.facts[(company.name, "based_in")]]
            self.facts[(company.name, "founder")] = rng.choice(locals_ if locals_ else people)

    def _draw_usage(self, rng: random.Random):
        """How often words and entities are used, and which words go together (collocations).

        Words are drawn Zipf-distributed over a seed-shuffled ranking; a noun prefers a few verbs and
        adjectives, a verb a few objects, and these preferences hold in COLLOCATION of the draws.
        That is what makes the grammar's content words predictable from their neighbours.
        """
        def ranked(items) -> ZipfChoice:
            items = list(items)
            rng.shuffle(items)
            return ZipfChoice(items)

        self.nouns_of = {kind: ranked(nouns) for kind, nouns in LEXICON.noun_kinds.items()}
        self.adjectives_of = {kind: ranked(adjectives) for kind, adjectives in LEXICON.adjectives_for.items()}
        self.any_transitive = ranked(LEXICON.verb_objects)
        self.any_intransitive = ranked(LEXICON.intransitive)
        self.any_frequency = ranked(dict.fromkeys(LEXICON.frequency.values()))
        self.any_manner = ranked(dict.fromkeys(LEXICON.manner.values()))
        animal_verbs = LEXICON.animal_subject_verbs
        self.preferred_verbs = {}
        for kind in ("person", "animal"):
            verbs = list(LEXICON.verb_objects) + LEXICON.intransitive
            if kind == "animal":
                verbs = [v for v in verbs if v in animal_verbs]
            for noun in LEXICON.noun_kinds[kind]:
                self.preferred_verbs[noun] = rng.sample(verbs, 3)
        self.preferred_objects = {verb: rng.sample([n for k in kinds for n in LEXICON.noun_kinds[k]], 3)
                                  for verb, kinds in LEXICON.verb_objects.items()}
        self.preferred_adjectives = {noun: rng.sample(LEXICON.adjectives_for[kind], 2)
                                     for kind, nouns in LEXICON.noun_kinds.items() for noun in nouns}
        self.popular_person = ZipfChoice(self.people, 0.7)
        self.popular_city = ZipfChoice(self.cities, 0.7)
        self.popular_company = ZipfChoice(self.companies, 0.7)

    def _value_pools(self) -> dict[str, list[str]]:
        """Every value a relation can take: where contradictions draw their wrong values from."""
        cities = [c.name for c in self.cities]
        people = [p.name for p in self.people]
        products = sorted({p for words in SECTORS.values() for p in words.split()})
        return {
            "lives_in": cities, "based_in": cities, "employer": [c.name for c in self.companies],
            "job": [f"{article(j)} {j}" for j in JOBS], "colour": LEXICON.colours,
            "pets": [f"{n} {p if n == 'a' else plural(p)}" for n in COUNT_WORDS for p in PETS],
            "food": [plural(f) for f in LEXICON.noun_kinds["food"]], "hobby": HOBBIES,
            "friend": people, "mayor": people, "founder": people, "country": self.countries,
            "river": self.rivers, "famous_for": FAMOUS_FOR, "product": products,
        }

    def fact(self, subject: str, relation: str) -> Fact:
        return Fact(subject, relation, self.facts[(subject, relation)])

    def false_value(self, subject: str, relation: str, rng: random.Random) -> str:
        true = self.facts[(subject, relation)]
        while True:
            value = rng.choice(self.value_pools[relation])
            if value != true and value != subject:
                return value

    def statement(self, fact: Fact, rng: random.Random, variant: Optional[int] = None,
                  pronoun: bool = False) -> str:
        """The fact as a sentence; `pronoun` replaces a sentence-initial subject with its pronoun."""
        relation = RELATIONS[fact.relation]
        if fact.negated:
            template = relation.negation
        else:
            if variant is None:
                variant = rng.randrange(len(relation.statements))
            template = relation.statements[variant]
        subject = fact.subject
        if pronoun and template.startswith("{s}"):
            subject = self.entities[fact.subject].pronoun
        return sentence_text(template.format(s=subject, o=fact.value).split())

    def question(self, subject: str, relation: str, rng: random.Random, variant: Optional[int] = None) -> str:
        questions = RELATIONS[relation].questions
        template = questions[rng.randrange(len(questions)) if variant is None else variant]
        return sentence_text(template.format(s=subject, o="").split())

    def _compile_readers(self):
        """One regular expression per statement, negation and question template."""
        def alternatives(options) -> str:
            return "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True))

        kinds = {"person": [p.name for p in self.people], "city": [c.name for c in self.cities],
                 "company": [c.name for c in self.companies]}

        def pattern(template: str, subjects: list[str], values: Optional[list[str]]) -> re.Pattern:
            text = re.escape(template).replace(r"\{s\}", f"(?P<s>{alternatives(subjects)})")
            if values is not None:
                text = text.replace(r"\{o\}", f"(?P<o>{alternatives(values)})")
            return re.compile(f"^{text}$", re.IGNORECASE)

        self._statement_readers = []
        self._question_readers = []
        for relation in RELATIONS.values():
            subjects = kinds[relation.subject_kind]
            values = self.value_pools[relation.name]
            for template in relation.statements:
                with_pronoun = subjects + (["she", "he"] if relation.subject_kind == "person" else ["it"])
                allowed = with_pronoun if template.startswith("{s}") else subjects
                self._statement_readers.append((relation.name, False, pattern(template, allowed, values)))
            self._statement_readers.append(
                (relation.name, True, pattern(relation.negation, subjects, values)))
            for template in relation.questions:
                self._question_readers.append((relation.name, pattern(template, subjects, None)))
        self._canonical = {n.lower(): n for names in kinds.values() for n in names}
        self.name_words = {w for names in kinds.values() for n in names for w in n.split()}
        self._canonical.update({v.lower(): v for values in self.value_pools.values() for v in values})

    def read_fact(self, sentence: str) -> Optional[Fact]:
        """The fact a single sentence states (its subject may be a pronoun), or None."""
        for relation, negated, regex in self._statement_readers:
            match = regex.match(sentence.strip())
            if match:
                subject = self._canonical.get(match["s"].lower(), match["s"].lower())
                return Fact(subject, relation, self._canonical[match["o"].lower()], negated)
        return None

    def read_facts(self, text: str) -> list[Fact]:
        """The facts of a text, one per sentence that states one; a pronoun refers to the last subject
        (of a fact or a question) it fits: she, he a person of that gender, it a city or company."""
        facts, last = [], {}
        parts = [p if p.endswith((".", "?")) else p + "."
                 for s in split_sentences(text) for p in s.split(", and ")]
        for sentence in parts:
            fact = self.read_fact(sentence)
            if fact is None:
                asked = self.read_question(sentence)
                if asked:  # "Where does X live? She lives in Y."
                    last[self.entities[asked[0]].pronoun] = asked[0]
                continue
            if fact.subject in PRONOUNS:
                if fact.subject not in last:
                    continue
                fact = replace(fact, subject=last[fact.subject])
            last[self.entities[fact.subject].pronoun] = fact.subject
            facts.append(fact)
        return facts

    def read_question(self, text: str) -> Optional[tuple[str, str]]:
        """(subject, relation) of a question, or None."""
        for relation, regex in self._question_readers:
            match = regex.match(text.strip())
            if match:
                return self._canonical[match["s"].lower()], relation
        return None

    # --- clauses ---

    def random_noun_phrase(self, rng: random.Random, kind: str, number: Optional[str] = None,
                           max_adjectives: int = 2, noun: Optional[str] = None) -> NounPhrase:
        number = number or rng.choice(("sg", "pl"))
        noun = noun or self.nouns_of[kind](rng)
        determiners = ("the", "the", "the") + (SG_DETERMINERS if number == "sg" else PL_DETERMINERS + ("",))
        n_adjectives = min(rng.choices((0, 1, 2), weights=(5, 4, 1))[0], max_adjectives)
        adjectives: list[str] = []
        while len(adjectives) < n_adjectives:
            adjective = rng.choice(self.preferred_adjectives[noun]) if rng.random() < COLLOCATION \
                else self.adjectives_of[kind](rng)
            if adjective not in adjectives:
                adjectives.append(adjective)
        return NounPhrase(noun, number, "common", rng.choice(determiners), tuple(adjectives))

    def kind_of(self, phrase: NounPhrase) -> str:
        """The kind of noun a subject is: a pronoun `it` stands for an animal, other pronouns for people."""
        if phrase.kind == "common":
            return LEXICON.kind_of[phrase.noun]
        return "animal" if phrase.noun == "it" else "person"

    def _verb_for(self, rng: random.Random, subject: NounPhrase, transitive: bool) -> str:
        """A verb for the subject: one it prefers (a name uses its job's), else any it can take."""
        noun = self.facts[(subject.noun, "job")].split()[-1] if subject.kind == "name" else subject.noun
        animal = self.kind_of(subject) == "animal"
        preferred = [v for v in self.preferred_verbs.get(noun, [])
                     if (v in LEXICON.verb_objects) == transitive]
        if preferred and rng.random() < COLLOCATION:
            return rng.choice(preferred)
        while True:
            verb = (self.any_transitive if transitive else self.any_intransitive)(rng)
            if not animal or verb in LEXICON.animal_subject_verbs:
                return verb

    def random_clause(self, rng: random.Random, subject: Optional[NounPhrase] = None,
                      tense: Optional[str] = None) -> Clause:
        if subject is None:
            roll = rng.random()
            if roll < 0.15:
                subject = NounPhrase(self.popular_person(rng).name, "sg", "name")
            else:
                subject = self.random_noun_phrase(rng, "animal" if roll < 0.3 else "person")
        tense = tense or rng.choice(("present", "past"))
        kind = rng.random()
        if kind < 0.15:
            noun = subject.noun if subject.kind == "common" else ""
            complement = ""
            while not complement or complement in subject.adjectives:
                if noun and rng.random() < COLLOCATION:
                    complement = rng.choice(self.preferred_adjectives[noun])
                else:
                    complement = self.adjectives_of[self.kind_of(subject)](rng)
            clause = Clause(subject, "be", tense, complement=complement)
        else:
            verb = self._verb_for(rng, subject, transitive=kind < 0.75)
            obj = None
            if verb in LEXICON.verb_objects:
                if rng.random() < COLLOCATION:
                    noun = rng.choice(self.preferred_objects[verb])
                    obj_kind = next(k for k in LEXICON.verb_objects[verb] if noun in LEXICON.noun_kinds[k])
                    obj = self.random_noun_phrase(rng, obj_kind, noun=noun)
                else:
                    obj = self.random_noun_phrase(rng, rng.choice(LEXICON.verb_objects[verb]))
            clause = Clause(subject, verb, tense, obj=obj)
        times = [t for t, tenses in TIMES.items() if tense in tenses]
        return replace(
            clause,
            frequency=self.any_frequency(rng) if rng.random() < 0.15 else "",
            manner=self.any_manner(rng) if clause.verb != "be" and rng.random() < 0.2 else "",
            place=self.popular_city(rng).name if rng.random() < 0.2 else "",
            time=rng.choice(times) if rng.random() < 0.35 else "",
        )

    def _noun_phrase_words(self, phrase: NounPhrase, rng: random.Random) -> list[str]:
        if phrase.kind != "common":
            return phrase.noun.split()
        words = [LEXICON.surface(a, rng) for a in phrase.adjectives]
        words.append(LEXICON.noun_forms[(LEXICON.surface(phrase.noun, rng), phrase.number)])
        if phrase.det == "a":
            return [article(words[0])] + words
        return ([phrase.det] if phrase.det else []) + words

    def clause_words(self, clause: Clause, rng: random.Random,
                     time_first: Optional[bool] = None) -> list[str]:
        """The clause's words, synonyms drawn at random, the time phrase first or last."""
        if time_first is None:
            time_first = rng.random() < 0.5
        words = clause.time.split() + [","] if clause.time and time_first else []
        words += self._noun_phrase_words(clause.subject, rng)
        number = clause.subject.number
        if clause.verb == "be":
            words.append(BE_FORMS[(number, clause.tense)])
            if clause.frequency:
                words.append(LEXICON.surface(clause.frequency, rng))
            words.append(LEXICON.surface(clause.complement, rng))
        else:
            if clause.frequency:
                words.append(LEXICON.surface(clause.frequency, rng))
            form = "past" if clause.tense == "past" else ("3sg" if number == "sg" else "base")
            words.append(LEXICON.verb_forms[(LEXICON.surface(clause.verb, rng), form)])
            if clause.obj is not None:
                words += self._noun_phrase_words(clause.obj, rng)
        if clause.manner:
            words.append(LEXICON.surface(clause.manner, rng))
        if clause.place:
            words += ["in", clause.place]
        if clause.time and not time_first:
            words += clause.time.split()
        return words + ["."]

    def realize(self, clause: Clause, rng: random.Random, time_first: Optional[bool] = None) -> str:
        return sentence_text(self.clause_words(clause, rng, time_first))

    def random_sentence(self, rng: random.Random, subject: Optional[NounPhrase] = None,
                        tense: Optional[str] = None, place: str = "") -> str:
        """A clause, or (COMPOUND of the time) two clauses joined by a conjunction, as text."""
        first = self.random_clause(rng, subject, tense)
        if place:
            first = replace(first, place=place)
        words = self.clause_words(first, rng)
        if rng.random() < COMPOUND:
            second_subject = None
            if rng.random() < 0.5:
                pronoun = self.pronoun_of(first.subject, rng)
                second_subject = NounPhrase(pronoun, first.subject.number, "pronoun")
            second = self.random_clause(rng, second_subject, first.tense)
            words = words[:-1] + [rng.choice(CONJUNCTIONS)] + self.clause_words(second, rng, time_first=False)
        return sentence_text(words)

    def pronoun_of(self, phrase: NounPhrase, rng: random.Random) -> str:
        if phrase.kind == "pronoun":
            return phrase.noun
        if phrase.kind == "name":
            return self.entities[phrase.noun].pronoun
        if phrase.number == "pl":
            return "they"
        return "it" if self.kind_of(phrase) == "animal" else rng.choice(("she", "he"))

    def parse_sentence(self, text: str) -> Optional[list[Clause]]:
        """The clauses of a sentence (split at conjunctions), or None when one breaks the grammar."""
        tokens = words_of(text)
        if len(tokens) < 3 or tokens[-1] != ".":
            return None
        parts: list[list[str]] = [[]]
        for token in tokens[:-1]:
            if token.lower() in CONJUNCTIONS:
                if parts[-1][-1:] == [","]:  # "A, and b": two sentences joined
                    parts[-1].pop()
                parts.append([])
            else:
                parts[-1].append(token)
        clauses = [_ClauseParser(self, part).parse() if part else None for part in parts]
        return None if None in clauses else clauses

    def parse_clause(self, text: str) -> Optional[Clause]:
        """The clause a sentence says, or None when it breaks the grammar (agreement, order, words)."""
        tokens = words_of(text)
        if len(tokens) < 3 or tokens[-1] != ".":
            return None
        return _ClauseParser(self, tokens[:-1]).parse()

    # --- documents ---

    def document(self, rng: random.Random) -> Document:
        kind = rng.choices(DOCUMENT_KINDS, weights=DOCUMENT_WEIGHTS)[0]
        return getattr(self, f"_{kind}_document")(rng)

    def join_sentences(self, sentences: list[str], rng: random.Random) -> list[str]:
        """Joins some neighbouring statements in pairs, "A, and b.", as prose does (JOINED of them)."""
        joined: list[str] = []
        for sentence in sentences:
            previous = joined[-1] if joined else ""
            if previous.endswith(".") and ", and " not in previous and sentence.endswith(".") \
                    and rng.random() < JOINED:
                first, rest = sentence.split(" ", 1)
                first = first if first in self.name_words else first.lower()
                joined[-1] = f"{previous[:-1]}, and {first} {rest}"
            else:
                joined.append(sentence)
        return joined

    def pronoun_is_clear(self, previous: Optional[Fact], subject: str) -> bool:
        """Whether a pronoun after the statement of `previous` can only mean `subject`."""
        if previous is None or previous.subject != subject:
            return False
        other = self.entities.get(previous.value)  # a person named in the statement could be meant too
        return other is None or other.pronoun != self.entities[subject].pronoun

    def facts_text(self, rng: random.Random, facts: list[Fact]) -> list[str]:
        """A sentence per fact; half of the subjects a pronoun could clearly stand for become one."""
        sentences, previous = [], None
        for fact in facts:
            pronoun = self.pronoun_is_clear(previous, fact.subject) and rng.random() < 0.5
            sentences.append(self.statement(fact, rng, pronoun=pronoun))
            previous = fact
        return sentences

    def _facts_text(self, rng: random.Random, entity: Entity, relations: list[str]) -> list[str]:
        return self.facts_text(rng, [self.fact(entity.name, relation) for relation in relations])

    def _person_document(self, rng: random.Random) -> Document:
        person = self.popular_person(rng)
        relations = rng.sample(RELATIONS_OF["person"], rng.randint(6, 8))
        sentences: list[str] = []
        previous: Optional[Fact] = None
        for relation in relations:
            facts = [self.fact(person.name, relation)]
            if rng.random() < 0.08:  # a true negation: the same relation with another value
                facts.append(Fact(person.name, relation, self.false_value(person.name, relation, rng), True))
            for fact in facts:
                pronoun = self.pronoun_is_clear(previous, person.name) and rng.random() < 0.5
                sentences.append(self.statement(fact, rng, pronoun=pronoun))
                previous = fact
            if relation == "employer" and rng.random() < 0.5:
                previous = self.fact(self.facts[(person.name, relation)], "based_in")
                sentences.append(self.statement(previous, rng))
            if rng.random() < 0.5:
                if self.pronoun_is_clear(previous, person.name) and rng.random() < 0.5:
                    subject = NounPhrase(person.pronoun, "sg", "pronoun")
                else:
                    subject = NounPhrase(person.name, "sg", "name")
                sentences.append(self.random_sentence(rng, subject=subject))
        return Document("person", person.name, " ".join(self.join_sentences(sentences, rng)))

    def _city_document(self, rng: random.Random) -> Document:
        city = self.popular_city(rng)
        sentences = self._facts_text(rng, city, rng.sample(RELATIONS_OF["city"], 4))
        residents = [p.name for p in self.people if self.facts[(p.name, "lives_in")] == city.name]
        for name in rng.sample(residents, min(len(residents), rng.randint(2, 4))):
            sentences.append(self.statement(self.fact(name, "lives_in"), rng))
        companies = [c.name for c in self.companies if self.facts[(c.name, "based_in")] == city.name]
        for name in rng.sample(companies, min(len(companies), 2)):
            sentences.append(self.statement(self.fact(name, "based_in"), rng))
        for _ in range(rng.randint(2, 3)):
            sentences.append(self.random_sentence(rng, place=city.name))
        return Document("city", city.name, " ".join(self.join_sentences(sentences, rng)))

    def _company_document(self, rng: random.Random) -> Document:
        company = self.popular_company(rng)
        sentences = self._facts_text(rng, company, rng.sample(RELATIONS_OF["company"], 3))
        staff = [p.name for p in self.people if self.facts[(p.name, "employer")] == company.name]
        for name in rng.sample(staff, min(len(staff), rng.randint(2, 3))):
            sentences.append(self.statement(self.fact(name, "employer"), rng))
            sentences.append(self.statement(self.fact(name, "job"), rng, pronoun=True))
        product = self.facts[(company.name, "product")]
        good = self.reputation[company.name]
        words = POSITIVE_ADJECTIVES if good else NEGATIVE_ADJECTIVES
        adjective = f"{INTENSIFIERS[good]} {rng.choice(words)}"
        saying = f"customers say the {product} of {company.name} are {adjective} ."
        sentences.append(sentence_text(saying.split()))
        for _ in range(rng.randint(1, 2)):
            sentences.append(self.random_sentence(rng))
        return Document("company", company.name, " ".join(self.join_sentences(sentences, rng)))

    def _review_document(self, rng: random.Random) -> Document:
        company = self.popular_company(rng)
        positive = self.reputation[company.name] if rng.random() < 0.8 else 1 - self.reputation[company.name]
        product = self.facts[(company.name, "product")]
        sentences = [sentence_text(f"{rng.choice(('last week', 'yesterday', 'recently'))} i bought "
                                   f"{product} from {company.name} .".split())]
        for _ in range(rng.randint(7, 11)):
            phrase, _ = self.review_phrase(rng, positive, company.name, negation=0.05, intensify=True)
            sentences.append(sentence_text(phrase + ["."]))
        closing = "i would recommend {c} to everyone ." if positive else \
            "i would not recommend {c} to anyone ."
        sentences.append(sentence_text(closing.format(c=company.name).split()))
        return Document("review", company.name, " ".join(self.join_sentences(sentences, rng)))

    def _story_document(self, rng: random.Random) -> Document:
        subject = self.random_noun_phrase(rng, "person", max_adjectives=1)
        tense = rng.choice(("present", "past"))
        sentences = [self.random_sentence(rng, subject=subject, tense=tense)]
        short = replace(subject, det="the", adjectives=())
        pronoun = NounPhrase(self.pronoun_of(subject, rng), subject.number, "pronoun")
        for _ in range(rng.randint(8, 12)):
            roll = rng.random()
            subject = short if roll < 0.35 else pronoun if roll < 0.7 else None
            sentences.append(self.random_sentence(rng, subject=subject, tense=tense))
        return Document("story", sentences[0], " ".join(self.join_sentences(sentences, rng)))

    def _faq_document(self, rng: random.Random) -> Document:
        pick = rng.choice((self.popular_person, self.popular_person, self.popular_city, self.popular_company))
        entity = pick(rng)
        relations = RELATIONS_OF[entity.kind]
        pairs = [(entity.name, r) for r in rng.sample(relations, min(len(relations), 6))]
        if entity.kind != "person":  # then also ask about its mayor or founder
            person = self.facts[(entity.name, "mayor" if entity.kind == "city" else "founder")]
            pairs += [(person, r) for r in rng.sample(RELATIONS_OF["person"], rng.randint(2, 3))]
        sentences = []
        for subject, relation in pairs:
            sentences.append(self.question(subject, relation, rng))
            sentences.append(self.statement(self.fact(subject, relation), rng, pronoun=rng.random() < 0.3))
        return Document("faq", entity.name, " ".join(sentences))

    # --- sentiment ---

    def review_phrase(self, rng: random.Random, positive: int, company: Optional[str] = None,
                      negation: float = 0.0, half: Optional[str] = None,
                      intensify: bool = False) -> tuple[list[str], int]:
        """A phrase of one sentiment word; with probability `negation` it is negated, which flips it.

        `half` (one of SENTIMENT_HALVES) draws the sentiment word from that half of its list; `intensify`
        puts the intensifier of its polarity before it unless the phrase is negated.
        Returns the words and the phrase's polarity (1 positive, 0 negative) after negation.
        """
        negated = rng.random() < negation
        said = positive if not negated else 1 - positive
        company = company or rng.choice(self.companies).name
        product = self.facts[(company, "product")]
        adverb = f"{INTENSIFIERS[said]} " if intensify and not negated else ""
        adjective = rng.choice(sentiment_half(POSITIVE_ADJECTIVES if said else NEGATIVE_ADJECTIVES, half))
        shape = rng.randrange(5)
        if shape == 0:
            words = f"the {rng.choice(REVIEW_NOUNS)} was {'not ' * negated}{adverb}{adjective}"
        elif shape == 1:
            words = f"the {product} from {company} were {'not ' * negated}{adverb}{adjective}"
        elif shape == 2:
            verbs = POSITIVE_VERBS if said else NEGATIVE_VERBS
            verb = rng.choice(sentiment_half(verbs, half))
            words = f"i did not {verb} the {product}" if negated else f"i {adverb}{verbs[verb]} the {product}"
        elif shape == 3:
            noun = rng.choice(sentiment_half(POSITIVE_NOUNS if said else NEGATIVE_NOUNS, half))
            words = f"it was {'not ' * negated}{adverb}{article(noun)} {noun}"
        else:
            words = f"the {product} are {'not ' * negated}{adverb}{adjective}"
        return words.split(), positive


class _ClauseParser:
    """Recursive descent over the clause grammar, on lowercased words (no final period)."""

    def __init__(self, world: World, tokens: list[str]):
        self.world = world
        self.tokens = [t.lower() for t in tokens]
        self.i = 0
        self.front_time = ""
        self.names = {p.name.lower(): p.name for p in world.people}
        self.cities = {c.name.lower(): c.name for c in world.cities}

    def peek(self, offset: int = 0) -> str:
        return self.tokens[self.i + offset] if self.i + offset < len(self.tokens) else ""

    def time(self) -> str:
        for phrase in TIMES:
            n = len(phrase.split())
            if " ".join(self.tokens[self.i:self.i + n]) == phrase:
                self.i += n
                return phrase
        return ""

    def noun_phrase(self, allow_pronoun: bool) -> Optional[NounPhrase]:
        word = self.peek()
        if allow_pronoun and word in PRONOUNS:
            self.i += 1
            return NounPhrase(word, PRONOUNS[word], "pronoun")
        two = f"{word} {self.peek(1)}"
        if two in self.names:
            self.i += 2
            return NounPhrase(self.names[two], "sg", "name")
        det = ""
        if word in ("the", "a", "an") + SG_DETERMINERS + PL_DETERMINERS:
            det = word
            self.i += 1
        first = self.peek()
        adjectives = []
        while self.peek() in LEXICON.adjectives:
            adjectives.append(LEXICON.adjectives[self.peek()])
            self.i += 1
        if self.peek() not in LEXICON.nouns or len(set(adjectives)) != len(adjectives):
            return None
        noun, number = LEXICON.nouns[self.peek()]
        self.i += 1
        if det in ("a", "an"):
            if det != article(first):
                return None
            det = "a"
        if (det == "" and number == "sg") or (det in SG_DETERMINERS and number == "pl") \
                or (det in PL_DETERMINERS and number == "sg"):
            return None
        return NounPhrase(noun, number, "common", det, tuple(adjectives))

    def parse(self) -> Optional[Clause]:
        self.front_time = self.time()
        if self.front_time:
            if self.peek() != ",":
                return None
            self.i += 1
        subject = self.noun_phrase(allow_pronoun=True)
        if subject is None:
            return None
        frequency = LEXICON.frequency.get(self.peek(), "")
        self.i += bool(frequency)
        start = self.i
        for verb, form in self.verb_analyses():
            self.i = start + 1
            clause = self.predicate(subject, verb, form, frequency)
            if clause is not None:
                return clause
        return None

    def verb_analyses(self) -> list[tuple[str, str]]:
        word = self.peek()
        for (number, tense), form in BE_FORMS.items():
            if word == form:
                return [("be", f"{tense}-{number}")]
        return LEXICON.verbs.get(word, [])

    def predicate(self, subject: NounPhrase, verb: str, form: str, frequency: str) -> Optional[Clause]:
        number = subject.number
        if verb == "be":
            tense, be_number = form.split("-")
            if be_number != number or frequency:
                return None
            frequency = LEXICON.frequency.get(self.peek(), "")
            self.i += bool(frequency)
            if self.peek() not in LEXICON.adjectives:
                return None
            complement = LEXICON.adjectives[self.peek()]
            clause = Clause(subject, "be", tense, complement=complement, frequency=frequency)
            self.i += 1
        else:
            if form == "past":
                tense = "past"
            elif form == ("3sg" if number == "sg" else "base"):
                tense = "present"
            else:
                return None
            obj = None
            if verb in LEXICON.verb_objects:
                obj = self.noun_phrase(allow_pronoun=False)
                if obj is None:
                    return None
            clause = Clause(subject, verb, tense, obj=obj, frequency=frequency)
            manner = LEXICON.manner.get(self.peek(), "")
            self.i += bool(manner)
            clause = replace(clause, manner=manner)
        place = ""
        if self.peek() == "in" and self.peek(1) in self.cities:
            place = self.cities[self.peek(1)]
            self.i += 2
        time = self.front_time or self.time()
        if self.i != len(self.tokens) or (time and clause.tense not in TIMES[time]):
            return None
        return replace(clause, place=place, time=time)
