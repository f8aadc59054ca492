import copy

import numpy as np
import pytest
import torch
from streaming.base.util import clean_stale_shared_memory

from src import text_data
from src.text_data import (GOLDEN_GAMMA, DataConfigError, MLMCollator, SampleTokenizer, build_text_dataloader, main,
                            splitmix64)
from src.tokenization import TokenizerNotFoundError, load_tokenizer, starts_are_tokenized_alike


@pytest.fixture
def tokenizer(synthetic_data):
    return load_tokenizer(str(synthetic_data["tokenizer"]))


def loader_cfg(synthetic_data, split="train", shuffle=True, **dataset):
    return {"name": "text", "num_workers": 0, "drop_last": True, "dataset": {
        "local": str(synthetic_data["mds"]), "split": split, "max_seq_len": 64, "shuffle": shuffle,
        "shuffle_seed": 3, "mlm_probability": 0.3, **dataset}}


def sample_order(loader, batches=None):
    order = []
    for i, batch in enumerate(loader):
        if batches is not None and i >= batches:
            break
        order.append(batch["sample_id"].tolist())
    return order


def test_masking_rate_and_80_10_10_split(tokenizer):
    collator = MLMCollator(tokenizer, mlm_probability=0.3, seed=1)
    text = "the quick brown fox jumps over the lazy dog " * 6
    encoded = tokenizer([text] * 400, truncation=True, max_length=64, padding="max_length")
    samples = [{"input_ids": ids, "attention_mask": mask, "sample_id": i}
               for i, (ids, mask) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))]
    batch = collator(samples)
    original = torch.tensor(encoded["input_ids"])
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    picked = batch["labels"] != -100
    rate = picked.sum() / (~special).sum()
    assert abs(rate.item() - 0.3) < 0.02
    assert not (picked & special).any(), "special or padding tokens were masked"
    assert torch.equal(batch["labels"][picked], original[picked])
    as_mask = (batch["input_ids"] == tokenizer.mask_token_id) & picked
    unchanged = (batch["input_ids"] == original) & picked
    assert abs(as_mask.sum() / picked.sum() - 0.8) < 0.03
    assert abs(unchanged.sum() / picked.sum() - 0.1 - 0.1 * 0.8 / len(tokenizer)) < 0.03
    assert torch.equal(batch["input_ids"][~picked], original[~picked])
    # The sizes the model reads on the host instead of waiting for the GPU: one int per sample.
    assert batch["real_token_counts"] == torch.tensor(encoded["attention_mask"]).sum(1).tolist()
    assert batch["predicted_token_counts"] == picked.sum(1).tolist()


# Texts where cutting at the wrong place would change the tokens: accents and combining marks, CJK
# characters (BERT's normalizer spaces them), punctuation runs, a word longer than WordPiece's 100
# characters, tabs and newlines, and \x1c (a control character BERT deletes: not a place to cut).
HARD_TEXT = ("Caf\u00e9 na\u0131\u0308ve r\u00e9sum\u00e9 \u4e2d\u6587\u5b57 ok... --- (a)(b)! "
             + "x" * 120 + " tab\tnew\nline\r\nend ab\x1ccd 3.14 e=mc2 ")


def test_a_long_documents_start_gives_its_first_tokens(synthetic_data, tokenizer):
    from streaming import StreamingDataset

    corpus = StreamingDataset(local=str(synthetic_data["mds"]), split="train", shuffle=False, batch_size=1)
    docs = [corpus[i]["text"] for i in range(60)]
    texts = [" ".join(docs[i:i + 4]) for i in range(0, 60, 4)] + [HARD_TEXT * 6, (HARD_TEXT + docs[0]) * 3]
    cut_short = used_start = 0
    for max_seq_len in (16, 64, 128):
        tokenize = SampleTokenizer(tokenizer, max_seq_len)
        assert tokenize.prefix_chars == 8 * max_seq_len
        for prefix_chars in (tokenize.prefix_chars, 2 * max_seq_len, 40):  # small ones force cuts and fallbacks
            tokenize.prefix_chars = prefix_chars
            for text in texts:
                assert tokenize({"text": text}) == tokenize.encode(text), (max_seq_len, prefix_chars, text[:80])
                start = tokenize.encode(text[:prefix_chars])
                cut_short += sum(start["attention_mask"]) < max_seq_len
                used_start += sum(start["attention_mask"]) == max_seq_len and len(text) > prefix_chars
    assert cut_short > 0, "no text took the fallback to tokenizing the whole text"
    assert used_start > 0, "no text was tokenized from its start alone"


@pytest.mark.parametrize("sides", [("right", "right"), ("left", "left")], ids=["right", "left"])
def test_the_rust_tokenizer_gives_what_the_transformers_call_gives(synthetic_data, tokenizer, sides):
    """SampleTokenizer.encode calls the fast tokenizer's Rust tokenizer directly; it must give exactly what
    `tokenizer(text, truncation=True, max_length=..., padding="max_length")` gives."""
    from streaming import StreamingDataset

    corpus = StreamingDataset(local=str(synthetic_data["mds"]), split="train", shuffle=False, batch_size=1)
    texts = [corpus[i]["text"] for i in range(40)] + ["", " ", HARD_TEXT, HARD_TEXT * 6, "word " * 200]
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side, tokenizer.truncation_side = sides
    for max_seq_len in (16, 128):
        tokenize = SampleTokenizer(tokenizer, max_seq_len)
        assert tokenize.backend is not None
        for text in texts:
            expected = tokenizer(text, truncation=True, max_length=max_seq_len, padding="max_length",
                                 return_token_type_ids=False)
            assert tokenize.encode(text) == {"input_ids": expected["input_ids"],
                                             "attention_mask": expected["attention_mask"]}, text[:60]


@pytest.mark.parametrize("clean_text, lowercase", [(True, True), (True, False), (False, True), (False, False)])
def test_ascii_text_skips_the_rust_normalizer_and_gets_the_same_ids(tokenizer, clean_text, lowercase):
    """AsciiFastPath normalizes ASCII text with str methods and runs the rest of the pipeline: the ids and
    mask must be the whole pipeline's for every ASCII character (controls, whitespace, punctuation) in
    several places, and for random text; non-ASCII text and text holding an added token go the whole way."""
    import pickle
    import random

    from tokenizers import normalizers

    backend = text_data.padded_backend(tokenizer, 32)
    backend.normalizer = normalizers.BertNormalizer(clean_text=clean_text, lowercase=lowercase)
    fast = text_data.AsciiFastPath.of(backend)
    texts = [text for c in map(chr, range(128)) for text in (c, f"ab{c}cd", f"Hello{c}World x", f"{c}{c}Y z")]
    rng = random.Random(0)
    pieces = ["The ", "cat's ", "U.S.A. ", "DON'T ", "\t", "\n", "x" * 30, "123,456 ", "MASK", "[", "]"]
    texts += ["".join(rng.choice([chr(rng.randrange(128)), rng.choice(pieces)]) for _ in range(rng.randrange(1, 80)))
              for _ in range(300)]
    taken = 0
    for text in texts:
        encoding = fast.encode(text)
        if encoding is not None:
            taken += 1
            expected = backend.encode(text)
            assert (encoding.ids, encoding.attention_mask) == (expected.ids, expected.attention_mask), repr(text)
    assert taken > 0.9 * len(texts)
    assert fast.encode("Café au lait") is None  # not ASCII
    assert fast.encode("a [MASK] b") is None and fast.encode("a [mask] b") is None  # an added token's text
    clone = pickle.loads(pickle.dumps(fast))  # as spawned dataloader workers receive it
    assert clone.encode("Hello\tWorld").ids == fast.encode("Hello\tWorld").ids
    backend.normalizer = normalizers.NFKC()
    assert text_data.AsciiFastPath.of(backend) is None  # a normalizer it cannot stand in for


def test_only_tokenizers_that_split_at_whitespace_first_tokenize_starts(tokenizer):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    def fast(pre_tokenizer, normalizer=None):
        backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
        backend.pre_tokenizer = pre_tokenizer
        if normalizer is not None:
            backend.normalizer = normalizer
        return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")

    assert starts_are_tokenized_alike(tokenizer)  # the embedded WordPiece tokenizer (BERT's pipeline)
    assert starts_are_tokenized_alike(fast(pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                                    pre_tokenizers.Digits()])))
    assert not starts_are_tokenized_alike(fast(pre_tokenizers.ByteLevel()))
    assert not starts_are_tokenized_alike(fast(pre_tokenizers.Digits()))  # splits, but not at whitespace
    assert not starts_are_tokenized_alike(fast(pre_tokenizers.Whitespace(), normalizers.Replace(" ", "")))
    assert SampleTokenizer(fast(pre_tokenizers.Metaspace()), 16).prefix_chars is None


def test_splitmix64_matches_the_reference_stream():
    # The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation, splitmix64.c).
    states = np.arange(1, 4, dtype=np.uint64) * GOLDEN_GAMMA
    assert [int(x) for x in splitmix64(states)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_masks_do_not_depend_on_sequence_length(tokenizer):
    collator = MLMCollator(tokenizer, mlm_probability=0.5, seed=3)
    ids = tokenizer("a b c d e f g h i j k l m n o p q r s t", max_length=64, padding="max_length")
    short = {"input_ids": ids["input_ids"][:32], "attention_mask": ids["attention_mask"][:32], "sample_id": 7}
    long = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], "sample_id": 7}
    assert torch.equal(collator([short])["labels"][0], collator([long])["labels"][0, :32])
    assert torch.equal(collator([short])["input_ids"][0], collator([long])["input_ids"][0, :32])


def test_masks_depend_on_sample_identity_only(tokenizer):
    collator = MLMCollator(tokenizer, mlm_probability=0.15, seed=5)
    encoded = tokenizer(["a b c d e f g h i j k l m n o p"] * 3, max_length=32, padding="max_length")
    samples = [{"input_ids": ids, "attention_mask": m, "sample_id": i}
               for i, (ids, m) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))]
    together = collator(samples)
    alone = collator([samples[2]])
    assert torch.equal(together["input_ids"][2], alone["input_ids"][0])
    assert torch.equal(together["labels"][2], alone["labels"][0])
    assert not torch.equal(together["labels"][0], together["labels"][1])


def test_training_masks_change_with_the_epoch_and_evaluation_masks_do_not(tokenizer):
    encoded = tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z"] * 2, max_length=32,
                        padding="max_length")
    samples = [{"input_ids": ids, "attention_mask": m, "sample_id": i}
               for i, (ids, m) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))]

    def labels(collator, epoch):
        return collator([{**sample, "epoch": epoch} for sample in samples])["labels"]
    dynamic = MLMCollator(tokenizer, mlm_probability=0.5, seed=5)
    static = MLMCollator(tokenizer, mlm_probability=0.5, seed=5, remask_each_epoch=False)
    assert not torch.equal(labels(dynamic, 0), labels(dynamic, 1))
    assert not torch.equal(labels(dynamic, 1), labels(dynamic, 2))
    assert torch.equal(labels(dynamic, 3), labels(dynamic, 3))  # still reproducible
    assert torch.equal(labels(static, 0), labels(static, 4))
    assert torch.equal(labels(static, 0), labels(dynamic, 0))


@pytest.mark.parametrize("remask", [True, False])
def test_a_second_epoch_masks_anew_unless_told_not_to(synthetic_data, tokenizer, remask):
    # Two passes over the validation split through the real loader: the same samples, masked anew in the
    # second pass when remask_each_epoch is on (training's default), identically when it is off.
    clean_stale_shared_memory()
    loader = build_text_dataloader(loader_cfg(synthetic_data, split="val", shuffle=False,
                                              remask_each_epoch=remask), tokenizer, 8)
    epochs = []
    for _ in range(2):
        epochs.append({sid: row for batch in loader for sid, row in zip(batch["sample_id"].tolist(),
                                                                          batch["labels"])})
    assert epochs[0].keys() == epochs[1].keys() and len(epochs[0]) >= 100
    same = sum(torch.equal(epochs[0][sid], epochs[1][sid]) for sid in epochs[0])
    assert same == (len(epochs[0]) if not remask else 0)


def test_remask_each_epoch_must_be_a_boolean(synthetic_data, tokenizer):
    with pytest.raises(DataConfigError, match="remask_each_epoch must be true or false"):
        build_text_dataloader(loader_cfg(synthetic_data, remask_each_epoch="yes"), tokenizer, 8)


def test_same_seed_same_batches(synthetic_data, tokenizer):
    clean_stale_shared_memory()
    first = sample_order(build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8), batches=6)
    clean_stale_shared_memory()
    second = sample_order(build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8), batches=6)
    clean_stale_shared_memory()
    other = sample_order(build_text_dataloader(loader_cfg(synthetic_data, shuffle_seed=4), tokenizer, 8), batches=6)
    assert first == second
    assert first != other


def test_resumption_continues_where_it_stopped(synthetic_data, tokenizer):
    clean_stale_shared_memory()
    uninterrupted = sample_order(build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8), batches=10)
    clean_stale_shared_memory()
    loader = build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8)
    before = sample_order(loader, batches=4)
    state = loader.dataset.state_dict(num_samples=4 * 8, from_beginning=False)
    clean_stale_shared_memory()
    resumed_loader = build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8)
    resumed_loader.dataset.load_state_dict(state)
    after = sample_order(resumed_loader, batches=6)
    assert before + after == uninterrupted


def test_missing_and_empty_data_folders_name_the_path(synthetic_data, tokenizer, tmp_path):
    cfg = loader_cfg(synthetic_data)
    cfg["dataset"]["local"] = str(tmp_path / "nowhere")
    with pytest.raises(DataConfigError, match=f"no MDS dataset at {tmp_path}/nowhere/train.*convert_dataset.py"):
        build_text_dataloader(cfg, tokenizer, 8)
    empty = tmp_path / "empty" / "train"
    empty.mkdir(parents=True)
    (empty / "index.json").write_text('{"version": 2, "shards": []}')
    cfg["dataset"]["local"] = str(tmp_path / "empty")
    with pytest.raises(DataConfigError, match="has no samples"):
        build_text_dataloader(cfg, tokenizer, 8)


def test_taken_shared_memory_is_explained(synthetic_data, tokenizer, monkeypatch):
    """streaming names its shared memory after the local folder; a second live dataset on it (another
    process, or a crashed run's leftovers) makes creating it fail with FileExistsError."""
    def taken(*args, **kwargs):
        raise FileExistsError(17, "File exists", "/000000_locals")

    monkeypatch.setattr(text_data.StreamingTextDataset, "__init__", taken)
    pauses = []
    monkeypatch.setattr(text_data.time, "sleep", pauses.append)
    with pytest.raises(DataConfigError, match="shared memory for the local folder .* already exists.*own data_local"):
        build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8)
    assert len(pauses) == 5, "tried six times before giving up"


def test_a_shared_memory_race_is_retried(synthetic_data, tokenizer, monkeypatch):
    """Two runs starting together can pick the same free shared-memory prefix; the slower one's create
    fails with FileExistsError, and the next attempt takes the next prefix."""
    clean_stale_shared_memory()
    real_init, failures = text_data.StreamingTextDataset.__init__, []

    def loses_the_race_twice(self, *args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise FileExistsError(17, "File exists", "/000000_locals")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(text_data.StreamingTextDataset, "__init__", loses_the_race_twice)
    monkeypatch.setattr(text_data.time, "sleep", lambda seconds: None)
    loader = build_text_dataloader(loader_cfg(synthetic_data), tokenizer, 8)
    assert len(failures) == 2 and next(iter(loader))["input_ids"].shape[0] == 8
    del loader
    clean_stale_shared_memory()


def test_unknown_dataset_keys_are_reported(synthetic_data, tokenizer):
    clean_stale_shared_memory()
    unused = []
    build_text_dataloader(loader_cfg(synthetic_data, predownlaod=8), tokenizer, 8, unused=unused,
                          section="train_loader")
    assert unused == ["train_loader.dataset.predownlaod"]


def test_tokenizer_folder_that_does_not_exist(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match=f"tokenizer folder {tmp_path}/tok does not exist"):
        load_tokenizer(str(tmp_path / "tok"))


def test_cli_prints_decoded_batches(synthetic_data, capsys):
    clean_stale_shared_memory()
    main(["--local_path", str(synthetic_data["mds"]), "--split", "val", "--tokenizer",
          str(synthetic_data["tokenizer"]), "--batches", "1", "--max_seq_len", "32"])
    out = capsys.readouterr().out
    assert "--- batch 0: input_ids (2, 32)" in out
    assert out.count("[CLS]") == 2 and "masked:" in out


def test_pretokenized_mds_gives_the_same_batches_as_tokenizing_on_the_fly(synthetic_data, tokenizer, tmp_path,
                                                                           monkeypatch):
    from src import convert_dataset
    from src.convert_dataset import main as convert

    monkeypatch.setattr(convert_dataset, "TOKENIZE_BATCH", 100)  # 300 documents: the last batch is full
    raw = synthetic_data["raw"]
    assert convert(["--dataset", "json", "--data_files", f"val={raw}/validation/*.json.gz", "--splits", "val",
                    "--out_root", str(tmp_path), "--tokenizer", str(synthetic_data["tokenizer"]),
                    "--max_seq_len", "64", "--compression", "zstd"]) == 0
    on_the_fly = build_text_dataloader(loader_cfg(synthetic_data, "val", shuffle=False), tokenizer, 16)
    pretokenized = build_text_dataloader(loader_cfg(synthetic_data, "val", shuffle=False, local=str(tmp_path)),
                                         tokenizer, 16)
    compared = 0
    for expected, given in zip(on_the_fly, pretokenized):
        for key in ("input_ids", "attention_mask", "labels", "sample_id"):
            assert torch.equal(expected[key], given[key]), key
        assert expected["real_token_counts"] == given["real_token_counts"]
        compared += 1
    assert compared == len(on_the_fly) > 5
    assert (tmp_path / "val" / "pretokenized.json").is_file()

    shorter = loader_cfg(synthetic_data, "val", shuffle=False, local=str(tmp_path), max_seq_len=32)
    with pytest.raises(DataConfigError, match=r"tokenized with --max_seq_len 64 and the loader's max_seq_len is 32: "
                                              r"set max_seq_len 64, or convert the text again with --max_seq_len 32"):
        build_text_dataloader(shorter, tokenizer, 16)
    info = tmp_path / "val" / "pretokenized.json"
    info.write_text(info.read_text().replace(f'"vocab_size": {len(tokenizer)}', '"vocab_size": 30522'))
    with pytest.raises(DataConfigError, match=r"\(30522 tokens\), and this run's tokenizer .* has \d+: convert the "
                                              r"text again with --tokenizer"):
        build_text_dataloader(loader_cfg(synthetic_data, "val", shuffle=False, local=str(tmp_path)), tokenizer, 16)


def test_pretokenizing_needs_both_flags(tmp_path, capsys):
    from src.convert_dataset import main as convert

    assert convert(["--dataset", "text", "--data_files", f"train={__file__}", "--out_root", str(tmp_path),
                    "--splits", "train", "--tokenizer", "bert-base-uncased"]) == 2
    assert "--tokenizer and --max_seq_len go together" in capsys.readouterr().err
