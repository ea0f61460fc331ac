"""anyshape.distributed on a real two-node Ray cluster on this machine: a head node and a worker
node (separate raylets, one CPU each, via ray.cluster_utils.Cluster), joined by address as an
existing cluster would be. Both nodes must compute rows.

The network is the small one of tests/test_distributed.py (MobileNet at a quarter width): what is
proved is where rows are computed, which does not depend on the network (issue 23, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
ray_data = pytest.importorskip("ray.data")

from anyshape import create_model, distributed, engine  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 * 1024**2, "include_dashboard": False},
    )
    worker = cluster.add_node(num_cpus=1, object_store_memory=100 * 1024**2)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_both_nodes_of_a_cluster_compute_rows(two_nodes, tmp_path, monkeypatch):
    cluster, worker = two_nodes
    # Ray Data starts a pool's actors asynchronously by default (wait_for_min_actors_s=-1: ray/data/
    # context.py), so when one actor is slow to start (its process loads ONNX Runtime while the
    # other tests load the machine) the first one can take every block; CI saw all 12 rows on one
    # node. Here the pool waits, bounded, for both actors, the premise of "both nodes compute".
    monkeypatch.setattr(ray_data.DataContext.get_current(), "wait_for_min_actors_s", 120)
    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(photos / f"{i:02d}.png")
    model = create_model("mobilenet", weights=None, alpha=0.25, include_top=False, input_shape=(None, None, 3))
    predictor = engine.Predictor(engine.feature_model(model, "avg_pool", "avg"))

    summary = distributed.features(
        predictor,
        [str(photos)],
        str(tmp_path / "out"),
        size=80,
        batch_size=2,
        address=cluster.address,
        cpus_per_actor=1,
    )
    assert not ray.is_initialized()  # joined by address, so the run disconnected at its end
    assert summary.actors == 2 and summary.ok == 12
    assert set(summary.rows_per_node) == {cluster.head_node.node_id, worker.node_id}
    assert all(n > 0 for n in summary.rows_per_node.values()) and sum(summary.rows_per_node.values()) == 12
    paths = distributed.read_output(tmp_path / "out").column("path").to_pylist()
    assert sorted(paths) == sorted(str(p) for p in photos.iterdir())
