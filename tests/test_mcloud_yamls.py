"""The MosaicML platform run YAMLs, read by mcli's own RunConfig: valid for mcli, their `parameters` equal to
the plain YAML each mirrors (up to the differences their headers name), and every file their command
names present in this repository."""
import re
import warnings

import pytest
import yaml
from mcli import RunConfig
from mcli.models.run_config import FinalRunConfig

from tests.conftest import REPO_ROOT

REMOTE_CHECKPOINT = "s3://your-bucket/mosaic-bert-base-uncased/ckpt/ep0-ba70000-rank0.pt"
# mcloud YAML -> (the plain YAML its parameters mirror, the script it runs, the documented differences)
MCLOUD_YAMLS = {
    "yamls/main/mcloud_run_a100_80gb.yaml": ("yamls/main/mosaic-bert-base-uncased.yaml", "main.py",
                                             {"device_train_microbatch_size": 512, "device_eval_batch_size": 512}),
    "yamls/main/mcloud_run_a100_40gb.yaml": ("yamls/main/mosaic-bert-base-uncased.yaml", "main.py", {}),
    "yamls/finetuning/mcloud_run.yaml": ("yamls/finetuning/mosaic-bert-base-uncased.yaml",
                                         "sequence_classification.py", {"load_path": REMOTE_CHECKPOINT}),
    "yamls/finetuning/glue/mcloud_run.yaml": ("yamls/finetuning/glue/mosaic-bert-base-uncased.yaml", "glue.py",
                                              {"starting_checkpoint_load_path": REMOTE_CHECKPOINT}),
}
GPU_TYPES = {"yamls/main/mcloud_run_a100_40gb.yaml": "a100_40gb"}


def load_run(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mcli warns (only) about fields it does not know
        run = RunConfig.from_file(REPO_ROOT / path)
    FinalRunConfig.finalize_config(run)  # what `mcli run` does before submitting: checks the image name
    return run


@pytest.mark.parametrize("path", sorted(MCLOUD_YAMLS))
def test_mcli_reads_the_run_and_its_parameters_mirror_the_plain_yaml(path):
    plain_path, script, differences = MCLOUD_YAMLS[path]
    run = load_run(path)
    assert run.name and run.image.startswith("mosaicml/pytorch:")
    assert run.compute == {"gpus": 8, "gpu_type": GPU_TYPES.get(path, "a100_80gb")}
    (repo,) = [i for i in run.integrations if i["integration_type"] == "git_repo"]

    plain = yaml.safe_load((REPO_ROOT / plain_path).read_text())
    assert set(differences) <= set(plain), "a documented difference names a key the plain YAML lacks"
    for key, value in differences.items():
        assert plain[key] != value
    assert run.parameters == {**plain, **differences}
    header = (REPO_ROOT / path).read_text().split("\nname:")[0]
    assert all(key in header for key in differences), "each difference is named in the file's header"

    lines = [line.strip() for line in run.command.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == f"cd {repo['git_repo'].split('/')[-1]}"
    assert script in lines[-1] and "/mnt/config/parameters.yaml" in lines[-1]
    launcher = "python" if script == "glue.py" else "composer"  # glue.py starts its own processes
    assert lines[-1].startswith(f"{launcher} {script} ")


@pytest.mark.parametrize("path", sorted(MCLOUD_YAMLS))
def test_every_file_the_command_names_exists(path):
    run = load_run(path)
    named = set()
    for line in run.command.splitlines():
        if line.strip().startswith("#"):
            continue
        named.update(re.findall(r"(?<![\w/.=-])([\w.-][\w./-]*\.(?:py|txt|yaml))\b", line))
    assert named >= {"requirements.txt", "requirements-nodeps.txt"}
    for name in named:
        assert (REPO_ROOT / name).is_file(), f"{path}: the command names {name}, which is not in the repository"
