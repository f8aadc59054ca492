"""README's two multi-node forms, run as two "nodes" on loopback (one CPU process each, gloo): the composer
launcher's flags, and the environment variables. Each node streams the data into its own local cache and
saves into its own folder, as separate machines would (tests/scripts/same_host_node.py keeps their streaming
shared memory apart, which separate machines need not); every rank ends with identical weights."""
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT, TEST_YAML, free_port

COMPOSER = os.path.join(os.path.dirname(sys.executable), "composer")


def node_overrides(synthetic_data, folder, node_rank):
    return [f"data_remote={synthetic_data['mds']}", f"data_local={folder}/node{node_rank}/cache",
            f"save_folder={folder}/node{node_rank}/ckpt", f"tokenizer_name={synthetic_data['tokenizer']}",
            "max_seq_len=32", "global_train_batch_size=8", "device_train_microbatch_size=4", "max_duration=4ba",
            "eval_interval=4ba", "eval_subset_num_batches=1", "train_loader.num_workers=0",
            "eval_loader.num_workers=0", "model.model_config.hidden_size=32",
            "model.model_config.intermediate_size=64", "model.model_config.num_attention_heads=2", "callbacks={}"]


def run_nodes(commands_and_envs):
    """Start every node, then wait for all of them (each blocks until the others join)."""
    nodes = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for command, env in commands_and_envs]
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=400)[0])
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank} failed:\n{output[-4000:]}"


def assert_ranks_agree(folder):
    ranks = [torch.load(folder / f"rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["batches"] for r in ranks] == [4, 4]
    for name, value in ranks[0]["weights"].items():
        torch.testing.assert_close(ranks[1]["weights"][name], value, rtol=0, atol=0, msg=name)


@pytest.fixture
def base_env():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}  # one CPU process per node
    for key in ("WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "BASE_RANK", "RANK"):
        env.pop(key, None)
    return env


def test_two_nodes_launched_by_flags_and_by_environment_train_identical_weights(synthetic_data, tmp_path, base_env):
    """Node 0 is started with README's flag form, node 1 with its environment-variable form: each form's
    launcher must work for the two to meet, and the run to finish (one launch, both forms)."""
    script = ["tests/scripts/same_host_node.py", "tests/scripts/train_and_dump.py", str(TEST_YAML), str(tmp_path)]
    port = free_port()
    by_flags = [COMPOSER, "--world_size", "2", "--node_rank", "0", "--master_addr", "127.0.0.1",
                "--master_port", str(port), *script, *node_overrides(synthetic_data, tmp_path, 0)]
    by_environment = {**base_env, "WORLD_SIZE": "2", "NODE_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                      "MASTER_PORT": str(port)}
    run_nodes([(by_flags, base_env),
               ([COMPOSER, *script, *node_overrides(synthetic_data, tmp_path, 1)], by_environment)])

    assert_ranks_agree(tmp_path)
    for rank in (0, 1):  # each node filled its own cache from the shared remote
        assert (tmp_path / f"node{rank}" / "cache" / "train" / "index.json").is_file()
