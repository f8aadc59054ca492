"""The embedded offline default: a synthetic English-like corpus, its tokenizer and GLUE-shaped tasks.

`python -m src.synthetic.prepare --out_dir data` writes them all; docs/synthetic_data.md says what they are.
"""
