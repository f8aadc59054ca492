import gzip
import json

import pytest
from streaming import StreamingDataset

from src.convert_dataset import ConversionError, convert_dataset, main, parse_data_files


def write_json_lines(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text, "url": f"https://example.com/{i}"}) + "\n")


def test_round_trip_keeps_every_text_in_order(tmp_path):
    texts = [f"document {i}: " + "word " * (i % 7) for i in range(250)]
    write_json_lines(tmp_path / "raw" / "part-0.json.gz", texts[:100])
    write_json_lines(tmp_path / "raw" / "part-1.json.gz", texts[100:])
    files = parse_data_files([f"train={tmp_path}/raw/*.json.gz"])
    written = convert_dataset("json", str(tmp_path / "mds"), ["train"], data_files=files, compression="zstd")
    assert written == {"train": 250}
    dataset = StreamingDataset(local=str(tmp_path / "mds"), split="train", shuffle=False)
    assert len(dataset) == 250
    assert [dataset[i]["text"] for i in range(len(dataset))] == texts
    assert not list(tmp_path.joinpath("mds").glob(".*partial"))


def test_plain_text_one_sample_per_line(tmp_path):
    (tmp_path / "corpus.txt").write_text("first line\nsecond line\nthird line\n")
    convert_dataset("text", str(tmp_path / "mds"), ["val"], data_files={"val": [str(tmp_path / "corpus.txt")]})
    dataset = StreamingDataset(local=str(tmp_path / "mds"), split="val", shuffle=False)
    assert [dataset[i]["text"] for i in range(3)] == ["first line", "second line", "third line"]


def test_refuses_to_overwrite_an_existing_split(tmp_path, capsys):
    write_json_lines(tmp_path / "a.json.gz", ["x"])
    (tmp_path / "mds" / "train").mkdir(parents=True)
    (tmp_path / "mds" / "train" / "index.json").write_text("{}")
    code = main(["--dataset", "json", "--data_files", f"train={tmp_path}/a.json.gz",
                 "--out_root", str(tmp_path / "mds"), "--splits", "train"])
    assert code == 2
    assert f"{tmp_path}/mds/train already exists" in capsys.readouterr().err


def test_unreachable_hub_points_to_local_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    code = main(["--dataset", "c4", "--data_subset", "en", "--out_root", str(tmp_path), "--splits", "val_small"])
    err = capsys.readouterr().err
    assert code == 2
    assert "could not read allenai/c4" in err and "--dataset json --data_files" in err
    assert not (tmp_path / "val_small").exists()


def test_bad_data_files_argument_and_missing_files(tmp_path):
    with pytest.raises(ConversionError, match="SPLIT=PATTERN"):
        parse_data_files(["no-equals-sign"])
    with pytest.raises(ConversionError, match="no file matches"):
        parse_data_files([f"train={tmp_path}/nothing-*.json"])


def test_a_failure_midway_leaves_no_partial_split(tmp_path):
    write_json_lines(tmp_path / "a.json.gz", ["fine"])
    with pytest.raises(ConversionError, match="has no 'body' column"):
        convert_dataset("json", str(tmp_path / "mds"), ["train"], data_files={"train": [str(tmp_path / "a.json.gz")]},
                        text_column="body")
    assert not (tmp_path / "mds" / "train").exists()
    assert not list((tmp_path / "mds").glob(".*"))
