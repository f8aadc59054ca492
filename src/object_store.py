"""Checkpoints in an object store (`save_folder: s3://bucket/{run_name}/ckpt`): where Composer 0.32.1 needs
help.

With a remote `save_folder`, Composer's autoresume downloads the run's `latest` checkpoint to a *local* path
spelled like the URI (`./s3:/bucket/<run>/ckpt/latest-rank0.pt`, relative to the working directory), and
on every later restart it prefers that local copy to the object store: a second restart on the same disk
resumes from the first restart's checkpoint, not from the newest one. `forget_autoresume_download`
removes that copy before the Trainer looks, so each restart fetches the newest checkpoint again.
"""
from __future__ import annotations

import logging
import os

from composer.utils import dist
from composer.utils.file_helpers import format_name_with_dist, partial_format

log = logging.getLogger(__name__)


def forget_autoresume_download(save_folder: str, run_name: str, save_latest_filename: str) -> None:
    """Delete the local copy an earlier autoresume left of a remote `latest` checkpoint (see module doc).

    On each node's local rank 0, which is the process that downloads it; the path is the one rank 0 uses.
    """
    if "://" not in save_folder or not save_latest_filename or dist.get_local_rank() != 0:
        return
    folder = format_name_with_dist(save_folder, run_name)
    latest = format_name_with_dist(partial_format(save_latest_filename, rank=0), run_name)
    stale = os.path.join(folder, latest)
    if os.path.isfile(stale):
        log.info("autoresume: removing %s, left by an earlier restart, to fetch the newest one", stale)
        os.remove(stale)
