"""The embedded offline default: synthetic language, corpus, tokenizer, GLUE tasks and prepare."""
import collections
import gzip
import json
import random
import statistics

import pytest

from src.synthetic.corpus import read_texts, write_corpus
from src.synthetic.glue_tasks import TASKS, make_split, nli_label
from src.synthetic.language import (
    INTENSIFIERS,
    LEXICON,
    NEGATIVE_VERBS,
    NEGATIVE_WORDS,
    POSITIVE_VERBS,
    POSITIVE_WORDS,
    PRONOUNS,
    RELATIONS,
    Fact,
    World,
    split_sentences,
    words_of,
)
from src.synthetic.prepare import prepare
from src.synthetic.tokenizer import SPECIAL_TOKENS, train_tokenizer


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


@pytest.fixture(scope="module")
def documents(world):
    rng = random.Random(0)
    return [world.document(rng) for _ in range(600)]


# --- corpus ----------------------------------------------------------------------------------------

def corpus_files(folder, seed):
    write_corpus(World(seed), folder, train_docs=60, val_docs=10, seed=seed, train_shards=2)
    return {path.name: path.read_bytes() for path in sorted(folder.rglob("*.json.gz"))}


def test_corpus_bytes_depend_only_on_the_seed(tmp_path):
    first, again, other = (corpus_files(tmp_path / name, seed)
                           for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert list(first) == ["c4-train.00000-of-00002.json.gz", "c4-train.00001-of-00002.json.gz",
                           "c4-validation.00000-of-00001.json.gz"]
    assert first == again
    assert all(first[name] != other[name] for name in first)


def test_corpus_has_c4_raw_shape(tmp_path):
    stats = write_corpus(World(0), tmp_path, train_docs=30, val_docs=7, seed=0, train_shards=3)
    records = [json.loads(line) for path in sorted((tmp_path / "train").iterdir())
               for line in gzip.open(path, "rt")]
    assert len(records) == 30 and stats["train"]["documents"] == 30 and stats["validation"]["documents"] == 7
    assert all(set(r) == {"text", "timestamp", "url"} for r in records)
    assert all(r["timestamp"].endswith("Z") and r["url"].startswith("https://") for r in records)
    assert [r["text"] for r in records] == list(read_texts(tmp_path, "train"))


# --- language --------------------------------------------------------------------------------------

def test_clauses_round_trip_through_the_parser(world):
    rng = random.Random(1)
    for _ in range(500):
        clause = world.random_clause(rng)
        text = world.realize(clause, rng)
        assert world.parse_clause(text) == clause, text


@pytest.mark.parametrize("sentence, grammatical", [
    ("The farmer buys a car.", True),
    ("The farmers buy a car.", True),
    ("The farmers buys a car.", False),
    ("The farmer buy a car.", False),
    ("These farmer buy a car.", False),
    ("A farmers bought an old car.", False),
    ("A farmer bought a old car.", False),
    ("Farmer the buys a car.", False),
    ("Yesterday, the children were tired.", True),
    ("Yesterday, the children was tired.", False),
    ("Every morning, the farmer bought a car.", False),
    ("She often feeds the dogs in the morning.", False),
    ("She often feeds the dogs.", True),
    ("They often feeds the dogs.", False),
])
def test_parser_enforces_agreement_and_order(world, sentence, grammatical):
    assert (world.parse_clause(sentence) is not None) == grammatical


def test_subject_verb_agreement_holds_in_generated_sentences(world, documents):
    stories = [d for d in documents if d.kind == "story"]
    sentences = [s for d in stories for s in split_sentences(d.text)]
    assert len(sentences) > 500
    assert all(world.parse_sentence(s) is not None for s in sentences)
    # An independent check on the words: a pronoun subject's present-tense verb has its number.
    checked = 0
    for sentence in sentences:
        words = [w.lower() for w in words_of(sentence)]
        for pronoun, verb in zip(words, words[1:]):
            forms = {form for _, form in LEXICON.verbs.get(verb, [])}
            if pronoun in PRONOUNS and forms & {"base", "3sg"} and "past" not in forms:
                assert ("3sg" in forms) == (PRONOUNS[pronoun] == "sg"), sentence
                checked += 1
    assert checked > 50


def test_facts_are_consistent_across_documents(world, documents):
    stated = collections.defaultdict(set)
    documents_per_fact = collections.Counter()
    for document in documents:
        facts = world.read_facts(document.text)
        for fact in facts:
            true_value = world.facts[(fact.subject, fact.relation)]
            assert (fact.value != true_value) == fact.negated, (document.text, fact)
            if not fact.negated:
                stated[(fact.subject, fact.relation)].add(fact.value)
        documents_per_fact.update({(f.subject, f.relation) for f in facts if not f.negated})
    assert len(stated) > 300
    assert all(len(values) == 1 for values in stated.values())
    assert sum(n >= 3 for n in documents_per_fact.values()) > 100  # facts recur
    assert World(seed=0).facts == world.facts and World(seed=1).facts != world.facts


def test_every_template_reads_back(world):
    rng = random.Random(2)
    for relation in RELATIONS.values():
        entity = next(e for e in world.entities.values() if e.kind == relation.subject_kind)
        fact = world.fact(entity.name, relation.name)
        for variant in range(len(relation.statements)):
            assert world.read_fact(world.statement(fact, rng, variant)) == fact
        negated = Fact(entity.name, relation.name, world.false_value(entity.name, relation.name, rng), True)
        assert world.read_fact(world.statement(negated, rng)) == negated
        for variant in range(len(relation.questions)):
            assert world.read_question(world.question(entity.name, relation.name, rng, variant)) == \
                (entity.name, relation.name)


# --- tokenizer -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_and_texts(tmp_path_factory, documents):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    texts = [d.text for d in documents]
    train_tokenizer(texts, folder, vocab_size=3000)
    return AutoTokenizer.from_pretrained(str(folder)), texts


def test_tokenizer_has_the_special_tokens_at_their_ids(tokenizer_and_texts):
    tokenizer, _ = tokenizer_and_texts
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
            tokenizer.mask_token_id) == (0, 1, 2, 3, 4)
    assert len(tokenizer) <= 3000


def test_tokenizer_uses_bert_templates(tokenizer_and_texts):
    tokenizer, _ = tokenizer_and_texts
    single = tokenizer("The farmer buys a car.")
    assert single["input_ids"][0] == 2 and single["input_ids"][-1] == 3
    pair = tokenizer("The farmer buys a car.", "She is tired.")
    types = pair["token_type_ids"]
    assert pair["input_ids"].count(3) == 2
    assert types == [0] * types.index(1) + [1] * (len(types) - types.index(1))
    assert tokenizer.decode(pair["input_ids"]) == "[CLS] the farmer buys a car. [SEP] she is tired. [SEP]"


def test_tokenizer_round_trips_the_corpus(tokenizer_and_texts):
    tokenizer, texts = tokenizer_and_texts
    for text in texts[:100]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text.lower()
    other_text = tokenizer("Room 42, Zürich!")["input_ids"]  # characters the corpus lacks are not [UNK]
    assert tokenizer.decode(other_text, skip_special_tokens=True) == "room 42, zurich!"


# --- GLUE ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def glue(world):
    return {(task, split): make_split(world, task, split, 120, seed=0)
            for task, spec in TASKS.items() for split in spec.splits}


def test_glue_tasks_have_glue_columns_and_balanced_labels(glue):
    expected = {"cola": ["sentence"], "sst2": ["sentence"], "mrpc": ["sentence1", "sentence2"],
                "rte": ["sentence1", "sentence2"], "stsb": ["sentence1", "sentence2"],
                "qqp": ["question1", "question2"], "qnli": ["question", "sentence"],
                "mnli": ["premise", "hypothesis"]}
    assert TASKS["mnli"].splits == ("train", "validation_matched", "validation_mismatched")
    for (task, split), columns in glue.items():
        assert list(columns) == expected[task] + ["label", "idx"]
        assert columns["idx"] == list(range(120))
        if task == "stsb":
            assert min(columns["label"]) == 0.0 and max(columns["label"]) == 5.0
            assert statistics.pstdev(columns["label"]) > 1.2
        else:
            counts = collections.Counter(columns["label"])
            assert sorted(counts) == list(range(len(TASKS[task].label_names)))
            assert len(set(counts.values())) == 1, (task, counts)


def accuracy(predictions, labels):
    return sum(p == t for p, t in zip(predictions, labels)) / len(labels)


def test_sst2_label_follows_the_sentiment_words(glue):
    rows = glue[("sst2", "train")]
    def count_rule(sentence):
        words = [w.lower() for w in words_of(sentence)]
        return int(sum(w in POSITIVE_WORDS for w in words) > sum(w in NEGATIVE_WORDS for w in words))
    assert accuracy([count_rule(s) for s in rows["sentence"]], rows["label"]) > 0.9


def test_sst2_validation_words_are_held_out_and_the_corpus_teaches_their_polarity(glue, documents):
    sentiment = POSITIVE_WORDS | NEGATIVE_WORDS
    def words_in(split):
        return [w.lower() for s in glue[("sst2", split)]["sentence"] for w in words_of(s)]
    seen, held_out = ({w for w in words_in(split) if w in sentiment} for split in ("train", "validation"))
    assert len(seen) > 20 and len(held_out) > 20 and not seen & held_out
    assert not set(INTENSIFIERS.values()) & set(words_in("train") + words_in("validation"))
    # In the corpus every sentiment word that is not negated comes after the intensifier of its polarity
    # (before `a`/`an` for nouns), and every word of both halves does so. Verbs count in the past tense:
    # reviews use the base form only after `did not` (and `enjoy` is also the hobby relation's verb).
    base_forms = set(POSITIVE_VERBS) | set(NEGATIVE_VERBS)
    intensified = set()
    for document in documents:
        words = [w.lower() for w in words_of(document.text)]
        for i, word in enumerate(words):
            before = words[i - 2] if words[i - 1] in ("a", "an") else words[i - 1]
            if word in sentiment - base_forms and before != "not":
                assert before == INTENSIFIERS[int(word in POSITIVE_WORDS)], document.text
                intensified.add(word)
    assert (seen | held_out) - base_forms <= intensified


def test_cola_label_is_the_grammar(world, glue):
    rows = glue[("cola", "train")]
    rule = [int(world.parse_sentence(s) is not None) for s in rows["sentence"]]
    assert accuracy(rule, rows["label"]) == 1.0


def test_mrpc_and_qqp_labels_are_sameness_of_meaning(world, glue):
    def meaning(sentence):
        return world.read_fact(sentence) or tuple(world.parse_sentence(sentence))
    rows = glue[("mrpc", "train")]
    same = [int(meaning(a) == meaning(b)) for a, b in zip(rows["sentence1"], rows["sentence2"])]
    assert accuracy(same, rows["label"]) == 1.0
    assert sum(a != b for a, b in zip(rows["sentence1"], rows["sentence2"])) == len(same)  # never a copy
    rows = glue[("qqp", "train")]
    same = [int(world.read_question(a) == world.read_question(b))
            for a, b in zip(rows["question1"], rows["question2"])]
    assert accuracy(same, rows["label"]) == 1.0


def test_nli_labels_follow_the_premise(world, glue):
    names = TASKS["mnli"].label_names
    for split in TASKS["mnli"].splits:
        rows = glue[("mnli", split)]
        rule = [names.index(nli_label(world.read_facts(p), world.read_fact(h)))
                for p, h in zip(rows["premise"], rows["hypothesis"])]
        assert accuracy(rule, rows["label"]) == 1.0
    kinds = {split: {world.entities[world.read_facts(p)[0].subject].kind
                     for p in glue[("mnli", split)]["premise"]} for split in TASKS["mnli"].splits}
    assert kinds == {"train": {"person", "company"}, "validation_matched": {"person", "company"},
                     "validation_mismatched": {"city"}}
    rows = glue[("rte", "train")]
    rule = [int(nli_label(world.read_facts(p), world.read_fact(h)) != "entailment")
            for p, h in zip(rows["sentence1"], rows["sentence2"])]
    assert accuracy(rule, rows["label"]) == 1.0


def test_qnli_label_is_whether_the_sentence_answers(world, glue):
    rows = glue[("qnli", "train")]
    def answers(question, sentence):
        subject, relation = world.read_question(question)
        return any(f.subject == subject and f.relation == relation for f in world.read_facts(sentence))
    rule = [int(not answers(q, s)) for q, s in zip(rows["question"], rows["sentence"])]
    assert accuracy(rule, rows["label"]) == 1.0


def test_stsb_score_follows_word_overlap(glue):
    rows = glue[("stsb", "train")]
    def overlap(a, b):
        a, b = {w.lower() for w in words_of(a)}, {w.lower() for w in words_of(b)}
        return len(a & b) / len(a | b)
    overlaps = [overlap(a, b) for a, b in zip(rows["sentence1"], rows["sentence2"])]
    assert statistics.correlation(overlaps, rows["label"]) > 0.85


# --- prepare ---------------------------------------------------------------------------------------

def test_prepare_writes_everything_once(tmp_path):
    import datasets
    from transformers import AutoTokenizer

    settings = dict(train_docs=120, val_docs=30, vocab_size=2000, glue_train_rows=24, glue_val_rows=12,
                    log=lambda _: None)
    steps = ("corpus", "tokenizer", "mds", "glue")
    assert prepare(tmp_path, **settings) == {step: "made" for step in steps}
    stats = json.loads((tmp_path / "synthetic-c4-raw" / "stats.json").read_text())
    assert stats["train"]["documents"] == 120 and stats["validation"]["documents"] == 30
    assert stats["tokens"]["train"]["most_frequent_token"] == "."
    assert 0.05 < stats["tokens"]["train"]["most_frequent_share"] < 0.2
    index = json.loads((tmp_path / "synthetic-c4" / "train" / "index.json").read_text())
    assert sum(shard["samples"] for shard in index["shards"]) == 120
    assert AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer")).mask_token_id == 4
    mnli_file = tmp_path / "synthetic-glue" / "mnli" / "validation_matched.parquet"
    mnli = datasets.load_dataset("parquet", data_files=str(mnli_file), split="train")
    assert mnli.features["label"].names == ["entailment", "neutral", "contradiction"] and len(mnli) == 12

    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
    assert prepare(tmp_path, **settings) == {step: "skipped" for step in steps}
    assert files == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
