"""A WordPiece tokenizer trained on the synthetic corpus, saved as an ordinary HF tokenizer folder.

BERT's pipeline: BertNormalizer (lowercase), BertPreTokenizer, WordPiece with `##` continuations,
`[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with token types 0 and 1. Load it with
`transformers.AutoTokenizer.from_pretrained(folder)`.
"""
from __future__ import annotations

import string
from collections import Counter
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast, PreTrainedTokenizerBase

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order
# Pieces added to the vocabulary where the corpus lacked them, so that words of other text ("42!") are
# spelled out rather than [UNK].
ALPHABET = string.ascii_lowercase + string.digits + string.punctuation


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 4096,
                    model_max_length: int = 512) -> PreTrainedTokenizerBase:
    """Train on `texts`, save to `out_dir`, return the loaded tokenizer.

    The trainer stops once every word of the corpus is a single token, so the vocabulary can come out
    smaller than `vocab_size`; the single characters of ALPHABET (and their `##` forms) are added on top
    where the corpus lacked them.
    """
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True,
                                                    handle_chinese_chars=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=2,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
                                        show_progress=False)
    backend.train_from_iterator(texts, trainer)
    vocab = backend.get_vocab()
    for piece in [*ALPHABET, *(f"##{c}" for c in ALPHABET)]:
        vocab.setdefault(piece, len(vocab))
    backend.model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", do_lower_case=True, model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def token_counts(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Counter:
    """How often each token occurs in `texts` (special tokens not counted)."""
    counts: Counter = Counter()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1000:
            counts.update(t for ids in tokenizer(batch, add_special_tokens=False)["input_ids"] for t in ids)
            batch = []
    if batch:
        counts.update(t for ids in tokenizer(batch, add_special_tokens=False)["input_ids"] for t in ids)
    return counts
