"""Synthetic GLUE: the eight GLUE tasks, in GLUE's columns and label spaces, from the synthetic world.

Each task's label is a function of its text that fine-tuning can learn (docs/synthetic_data.md):

    cola  grammatical clause (1) or one broken by an agreement error, a word-order swap, a missing or
          doubled word (0)
    sst2  review phrases; the label is the majority polarity of their sentiment words (a `not` flips one);
          the validation split's sentiment words are the held-out half, which the training split never uses
    mrpc  the same clause or fact in other words: synonyms, moved time phrase, another template (1),
          or with one or two content words / the value / the subject changed, or negated (0)
    qqp   two questions about the same entity and relation (1), or differing in one of them (0)
    stsb  a clause and a copy with k of its n content slots changed: score 5 * (n - k) / n
    qnli  a question and sentences that state the asked relation of the asked entity (0) or not (1)
    mnli  premise of facts about one entity; hypothesis restates one (0 entailment), is about a relation
          the premise leaves open (1 neutral) or disagrees with it (2 contradiction); the matched genre
          is people and companies, the mismatched genre cities
    rte   like mnli, with premises about two related entities, and labels entailment (0) or not (1)

Rows are written as `<out>/<task>/<split>.parquet` with GLUE's columns plus `label` and `idx`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from src.synthetic.language import (
    LEXICON,
    RELATIONS,
    RELATIONS_OF,
    TIMES,
    Clause,
    Fact,
    NounPhrase,
    World,
    sentence_text,
)


@dataclass(frozen=True)
class TaskSpec:
    text_columns: tuple[str, ...]
    label_names: Optional[tuple[str, ...]]  # None: regression (stsb)
    splits: tuple[str, ...] = ("train", "validation")


TASKS = {
    "cola": TaskSpec(("sentence",), ("unacceptable", "acceptable")),
    "sst2": TaskSpec(("sentence",), ("negative", "positive")),
    "mrpc": TaskSpec(("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "qqp": TaskSpec(("question1", "question2"), ("not_duplicate", "duplicate")),
    "stsb": TaskSpec(("sentence1", "sentence2"), None),
    "mnli": TaskSpec(("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
                     ("train", "validation_matched", "validation_mismatched")),
    "qnli": TaskSpec(("question", "sentence"), ("entailment", "not_entailment")),
    "rte": TaskSpec(("sentence1", "sentence2"), ("entailment", "not_entailment")),
}
DEFAULT_TRAIN_ROWS = {"cola": 1000, "sst2": 2000, "mrpc": 1000, "qqp": 2000, "stsb": 1000, "mnli": 2000,
                      "qnli": 2000, "rte": 500}
DEFAULT_VALIDATION_ROWS = 300
MNLI_GENRES = {"train": ("person", "company"), "validation_matched": ("person", "company"),
               "validation_mismatched": ("city",)}


# --- shared pieces ---------------------------------------------------------------------------------

def entities_of(world: World, kinds: tuple[str, ...]):
    pools = {"person": world.people, "city": world.cities, "company": world.companies}
    return [e for kind in kinds for e in pools[kind]]


def nli_label(premise: list[Fact], hypothesis: Fact) -> str:
    """What a premise of (positive) facts says about a hypothesis; every relation has one value."""
    known = {(f.subject, f.relation): f.value for f in premise if not f.negated}
    if (hypothesis.subject, hypothesis.relation) not in known:
        return "neutral"
    holds = known[(hypothesis.subject, hypothesis.relation)] == hypothesis.value
    return "entailment" if holds != hypothesis.negated else "contradiction"


def facts_text(world: World, rng: random.Random, facts: list[Fact]) -> str:
    """The facts as prose: pronouns where clear, some statements joined with ", and"."""
    return " ".join(world.join_sentences(world.facts_text(rng, facts), rng))


def hypothesis_for(world: World, rng: random.Random, premise: list[Fact], label: str) -> Fact:
    """A hypothesis that the premise entails, leaves open (neutral) or contradicts."""
    fact = rng.choice(premise)
    if label == "entailment":
        if rng.random() < 0.75:
            return fact
        wrong = world.false_value(fact.subject, fact.relation, rng)
        return Fact(fact.subject, fact.relation, wrong, negated=True)
    if label == "contradiction":
        if rng.random() < 0.6:
            return Fact(fact.subject, fact.relation, world.false_value(fact.subject, fact.relation, rng))
        return replace(fact, negated=True)
    subject = fact.subject
    open_relations = [r for r in RELATIONS_OF[world.entities[subject].kind]
                      if all(f.relation != r for f in premise)]
    relation = rng.choice(open_relations)
    if rng.random() < 0.5:
        value = world.facts[(subject, relation)]
    else:
        value = world.false_value(subject, relation, rng)
    return Fact(subject, relation, value, negated=rng.random() < 0.25)


def restate(world: World, rng: random.Random, fact: Fact, avoid: str) -> str:
    """The fact in words other than `avoid` where the relation has other templates."""
    for _ in range(10):
        text = world.statement(fact, rng)
        if text != avoid:
            return text
    return text


def change_slots(world: World, rng: random.Random, clause: Clause, k: int) -> tuple[Clause, int]:
    """The clause with up to k of its content slots given another value (a change of meaning, not of
    words), and how many were changed (fewer than k only where a slot has no other possible value)."""
    changed = 0
    for slot in rng.sample(clause.slots(), len(clause.slots())):
        if changed == k:
            break
        try:
            clause = _change_slot(world, rng, clause, slot)
            changed += 1
        except IndexError:  # no other value fits (e.g. the only food verb an animal takes)
            pass
    return clause, changed


def _other(rng: random.Random, options, current):
    return rng.choice([o for o in options if o != current])


def _change_slot(world: World, rng: random.Random, clause: Clause, slot: str) -> Clause:
    if slot.startswith(("subject", "object")):
        role = "subject" if slot.startswith("subject") else "obj"
        phrase: NounPhrase = getattr(clause, role)
        if slot.startswith(("subject_adjective", "object_adjective")):
            i = int(slot[-1])
            adjectives = LEXICON.adjectives_for[world.kind_of(phrase)]
            new = _other(rng, [a for a in adjectives if a not in phrase.adjectives], phrase.adjectives[i])
            phrase = replace(phrase, adjectives=phrase.adjectives[:i] + (new,) + phrase.adjectives[i + 1:])
        elif phrase.kind == "name":
            phrase = replace(phrase, noun=_other(rng, [p.name for p in world.people], phrase.noun))
        else:  # another noun of the same kind, which the verb and the adjectives suit as well
            nouns = LEXICON.noun_kinds[LEXICON.kind_of[phrase.noun]]
            phrase = replace(phrase, noun=_other(rng, nouns, phrase.noun))
        return replace(clause, **{role: phrase})
    if slot == "verb":
        if clause.verb == "be":
            adjectives = [a for a in LEXICON.adjectives_for[world.kind_of(clause.subject)]
                          if a not in clause.subject.adjectives]
            return replace(clause, complement=_other(rng, adjectives, clause.complement))
        animal = clause.subject.kind == "common" and clause.subject.noun in LEXICON.noun_kinds["animal"]
        if clause.obj is None:
            options = LEXICON.intransitive
        else:
            kind = next(k for k in LEXICON.verb_objects[clause.verb]
                        if clause.obj.noun in LEXICON.noun_kinds[k])
            options = [v for v, kinds in LEXICON.verb_objects.items() if kind in kinds]
        options = [v for v in options if not animal or v in LEXICON.animal_subject_verbs]
        return replace(clause, verb=_other(rng, options, clause.verb))
    if slot == "frequency":
        adverbs = list(dict.fromkeys(LEXICON.frequency.values()))
        return replace(clause, frequency=_other(rng, adverbs, clause.frequency))
    if slot == "manner":
        adverbs = list(dict.fromkeys(LEXICON.manner.values()))
        return replace(clause, manner=_other(rng, adverbs, clause.manner))
    if slot == "place":
        return replace(clause, place=_other(rng, [c.name for c in world.cities], clause.place))
    times = [t for t, tenses in TIMES.items() if clause.tense in tenses]
    return replace(clause, time=_other(rng, times, clause.time))


def paraphrase(world: World, rng: random.Random, clause: Clause, text: str) -> Optional[str]:
    """The clause in other words (synonyms, time phrase moved), or None when it has no other words."""
    for _ in range(10):
        other = world.realize(clause, rng)
        if other != text:
            return other
    return None


# --- corruptions (CoLA) ----------------------------------------------------------------------------

BE_SWAP = {"is": "are", "are": "is", "was": "were", "were": "was"}
SG_PL_DETERMINERS = {"a": "some", "an": "some", "this": "these", "that": "those", "every": "many",
                     "these": "this", "those": "that", "many": "every", "some": "a", "two": "a", "three": "a",
                     "four": "a"}


def corrupt(rng: random.Random, words: list[str]) -> list[str]:
    """One random edit of the kind grammar checks catch: agreement, order, a missing or doubled word."""
    words = list(words)
    body = range(len(words) - 1)  # never the final period
    kind = rng.choice(("agreement", "agreement", "determiner", "order", "missing", "doubled"))
    verbs = [i for i in body if words[i] in LEXICON.verb_base or words[i] in BE_SWAP]
    nouns = [i for i in body if words[i] in LEXICON.nouns]
    if kind == "agreement" and verbs:
        i = rng.choice(verbs)
        if words[i] in BE_SWAP:
            words[i] = BE_SWAP[words[i]]
        else:
            base = LEXICON.verb_base[words[i]]
            forms = {"3sg": LEXICON.verb_forms[(base, "base")], "base": LEXICON.verb_forms[(base, "3sg")]}
            form = next((f for lemma, f in LEXICON.verbs[words[i]] if f in forms), None)
            if form is None:  # a past form: agreement shows only in the present
                words[i] = forms["base"]
            else:
                words[i] = forms[form]
    elif kind == "determiner" and nouns:
        i = rng.choice(nouns)
        if i > 0 and words[i - 1].lower() in SG_PL_DETERMINERS and rng.random() < 0.5:
            words[i - 1] = SG_PL_DETERMINERS[words[i - 1].lower()]
        else:
            base = LEXICON.noun_base[words[i]]
            number = LEXICON.nouns[words[i]][1]
            words[i] = LEXICON.noun_forms[(base, "pl" if number == "sg" else "sg")]
    elif kind == "order":
        i = rng.randrange(len(words) - 2)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == "missing":
        del words[rng.choice(verbs or list(body))]
    else:
        i = rng.choice(list(body))
        words.insert(i, words[i])
    return words


# --- tasks: each makes one row for a label -----------------------------------------------------------

def cola_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    while True:
        clause = world.random_clause(rng)
        words = world.clause_words(clause, rng)
        if label == 1:
            return {"sentence": sentence_text(words)}
        for _ in range(20):
            text = sentence_text(corrupt(rng, words))
            if world.parse_sentence(text) is None:
                return {"sentence": text}


def sst2_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    company = rng.choice(world.companies).name
    polarities = {1: [label], 2: [label, label], 3: [label, label, 1 - label]}[rng.choice((1, 1, 2, 3))]
    rng.shuffle(polarities)
    words: list[str] = []
    if rng.random() < 0.3:
        when = rng.choice(("last week", "yesterday", "recently"))
        words = f"{when} i bought {world.facts[(company, 'product')]} from {company} and".split()
    phrases: list[list[str]] = []
    while len(phrases) < len(polarities):
        phrase = world.review_phrase(rng, polarities[len(phrases)], company, negation=0.06,
                                     half="seen" if split == "train" else "held_out")[0]
        if phrase not in phrases:
            phrases.append(phrase)
    for i, phrase in enumerate(phrases):
        if i:
            words.append("but" if polarities[i] != polarities[i - 1] else rng.choice(("and", ",")))
        words += phrase
    return {"sentence": sentence_text(words + ["."])}


def mrpc_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    if rng.random() < 0.5:
        while True:
            clause = world.random_clause(rng)
            first = world.realize(clause, rng)
            if label == 1:
                second = paraphrase(world, rng, clause, first)
                if second is not None:
                    return {"sentence1": first, "sentence2": second}
            else:
                changed, _ = change_slots(world, rng, clause, rng.choice((1, 1, 2)))
                return {"sentence1": first, "sentence2": world.realize(changed, rng)}
    entity = rng.choice(world.people + world.cities + world.companies)
    fact = world.fact(entity.name, rng.choice(RELATIONS_OF[entity.kind]))
    first = world.statement(fact, rng)
    if label == 1:
        return {"sentence1": first, "sentence2": restate(world, rng, fact, first)}
    change = rng.randrange(3)
    if change == 0:
        other = replace(fact, value=world.false_value(fact.subject, fact.relation, rng))
    elif change == 1:
        subject = rng.choice([e.name for e in entities_of(world, (entity.kind,)) if e.name != entity.name])
        other = Fact(subject, fact.relation, world.facts[(subject, fact.relation)])
        if other.value == fact.value:
            other = replace(fact, negated=True)
    else:
        other = replace(fact, negated=True)
    return {"sentence1": first, "sentence2": world.statement(other, rng)}


def qqp_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    entity = rng.choice(world.people + world.cities + world.companies)
    relation = rng.choice(RELATIONS_OF[entity.kind])
    variants = list(range(len(RELATIONS[relation].questions)))
    first_variant = rng.choice(variants)
    first = world.question(entity.name, relation, rng, first_variant)
    if label == 1:
        return {"question1": first, "question2": world.question(
            entity.name, relation, rng, _other(rng, variants, first_variant))}
    if rng.random() < 0.5:
        subject = rng.choice([e.name for e in entities_of(world, (entity.kind,)) if e.name != entity.name])
        return {"question1": first, "question2": world.question(subject, relation, rng)}
    return {"question1": first, "question2": world.question(
        entity.name, _other(rng, RELATIONS_OF[entity.kind], relation), rng)}


def stsb_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    clause = world.random_clause(rng)
    slots = len(clause.slots())
    other, changed = change_slots(world, rng, clause, rng.randint(0, slots))
    first = world.realize(clause, rng)
    second = (changed == 0 and paraphrase(world, rng, clause, first)) or world.realize(other, rng)
    return {"sentence1": first, "sentence2": second, "label": round(5.0 * (slots - changed) / slots, 3)}


def qnli_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    entity = rng.choice(world.people + world.cities + world.companies)
    relations = RELATIONS_OF[entity.kind]
    relation = rng.choice(relations)
    question = world.question(entity.name, relation, rng)
    if label == 0:
        facts = [world.fact(entity.name, relation)]
    elif rng.random() < 0.5:
        facts = [world.fact(entity.name, _other(rng, relations, relation))]
    else:
        subject = rng.choice([e.name for e in entities_of(world, (entity.kind,)) if e.name != entity.name])
        facts = [world.fact(subject, relation)]
    if rng.random() < 0.5:  # a second sentence about the same subject, on another relation
        extra = world.fact(facts[0].subject, _other(rng, relations, relation))
        facts.insert(rng.randrange(2), extra)
    return {"question": question, "sentence": facts_text(world, rng, facts)}


def mnli_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    entity = rng.choice(entities_of(world, MNLI_GENRES[split]))
    relations = RELATIONS_OF[entity.kind]
    stated = rng.sample(relations, rng.randint(1, min(3, len(relations) - 1)))  # leave one open
    premise = [world.fact(entity.name, r) for r in stated]
    hypothesis = hypothesis_for(world, rng, premise, TASKS["mnli"].label_names[label])
    return {"premise": facts_text(world, rng, premise), "hypothesis": world.statement(hypothesis, rng)}


def rte_row(world: World, rng: random.Random, label: int, split: str) -> dict:
    person = rng.choice(world.people)
    company = world.facts[(person.name, "employer")]
    premise = [world.fact(person.name, r) for r in rng.sample(RELATIONS_OF["person"], rng.randint(2, 3))]
    premise += [world.fact(company, r) for r in rng.sample(RELATIONS_OF["company"], rng.randint(1, 2))]
    if label == 0:
        hypothesis = hypothesis_for(world, rng, premise, "entailment")
    else:
        hypothesis = hypothesis_for(world, rng, premise, rng.choice(("neutral", "contradiction")))
    return {"sentence1": facts_text(world, rng, premise), "sentence2": world.statement(hypothesis, rng)}


ROW_MAKERS: dict[str, Callable[[World, random.Random, int, str], dict]] = {
    "cola": cola_row, "sst2": sst2_row, "mrpc": mrpc_row, "qqp": qqp_row, "stsb": stsb_row,
    "mnli": mnli_row, "qnli": qnli_row, "rte": rte_row,
}


def make_split(world: World, task: str, split: str, rows: int, seed: int) -> dict[str, list]:
    """`rows` rows with balanced labels (stsb: scores spread over [0, 5]), as columns."""
    spec = TASKS[task]
    rng = random.Random(f"synthetic-glue:{seed}:{task}:{split}")
    n_labels = len(spec.label_names) if spec.label_names else 1
    labels = [i % n_labels for i in range(rows)]
    rng.shuffle(labels)
    columns: dict[str, list] = {name: [] for name in spec.text_columns + ("label", "idx")}
    for idx, label in enumerate(labels):
        row = ROW_MAKERS[task](world, rng, label, split)
        row.setdefault("label", label)
        for name, value in row.items():
            columns[name].append(value)
        columns["idx"].append(idx)
    return columns


def write_glue_tasks(world: World, out_dir: str | Path, seed: int,
                     train_rows: Optional[dict[str, int]] = None,
                     validation_rows: Optional[dict[str, int]] = None,
                     tasks: Optional[list[str]] = None) -> dict[str, dict[str, int]]:
    """Write `<out_dir>/<task>/<split>.parquet` for each task; returns the row counts."""
    import datasets
    import pyarrow.parquet as pq

    train_rows = {**DEFAULT_TRAIN_ROWS, **(train_rows or {})}
    validation_rows = {**{t: DEFAULT_VALIDATION_ROWS for t in TASKS}, **(validation_rows or {})}
    counts: dict[str, dict[str, int]] = {}
    for task in tasks or list(TASKS):
        spec = TASKS[task]
        features = datasets.Features({
            **{name: datasets.Value("string") for name in spec.text_columns},
            "label": datasets.ClassLabel(names=list(spec.label_names)) if spec.label_names
            else datasets.Value("float32"),
            "idx": datasets.Value("int32"),
        })
        folder = Path(out_dir, task)
        folder.mkdir(parents=True, exist_ok=True)
        counts[task] = {}
        for split in spec.splits:
            rows = train_rows[task] if split == "train" else validation_rows[task]
            columns = make_split(world, task, split, rows, seed)
            # the table's metadata carries the features, so `datasets` reads the labels back as ClassLabel
            pq.write_table(datasets.Dataset.from_dict(columns, features=features).data.table,
                           folder / f"{split}.parquet")
            counts[task][split] = rows
    return counts
