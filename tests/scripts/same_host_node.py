"""Run a training script as one "node" of several that share this host (tests only).

    composer --world_size 2 --node_rank R ... tests/scripts/same_host_node.py SCRIPT [ARGS ...]

Separate machines each have their own /dev/shm. Nodes on one host share it, and streaming's local leaders
(one per node) look for a free shared-memory prefix at the same moment, between two barriers, so they
find the same one and the second fails to create it. Here each node looks in its own range of prefixes;
the script itself runs unchanged.
"""
import itertools
import os
import runpy
import sys

import streaming.base.shared.prefix as prefix

node_rank = int(os.environ["NODE_RANK"])  # set by the composer launcher for each process it starts
prefix._each_prefix_int = lambda: itertools.count(100_000 * node_rank)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
