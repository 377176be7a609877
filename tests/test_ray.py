"""Scoring and oracle tasks on a real two-node Ray cluster on 127.0.0.1.

The module starts ``ray start --head`` and a second node with ``ray start --address`` (each with
1 CPU and 1 GPU declared: Ray hands out GPU ids and sets CUDA_VISIBLE_DEVICES even without a
card, and the actors then compute on the CPU), connects this process to it, and stops both nodes
at the end, also after a failure. Without a working ``ray`` command the module is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from discovery.compute import ComputeError, LocalScorer
from discovery.surrogate import DeepEnsemble, EnsembleConfig

ray = pytest.importorskip("ray")

from discovery.compute.cluster import RayScorer  # noqa: E402 (needs ray)
from discovery.compute.tasks import TaskFailed, finished, submit_task  # noqa: E402
from tests.test_campaign import CAMPAIGN as BASE_CAMPAIGN  # noqa: E402

#: Tests on the cluster: about a minute and a half in all (two Ray nodes, their worker processes).
on_cluster = pytest.mark.slow

RAY_CLI = Path(sys.executable).with_name("ray")
POOL_ROWS = 100_000
CHUNK_ROWS = 2048


# --------------------------------------------------------------------------------- cluster
@dataclass
class Cluster:
    address: str
    temp_dir: Path
    nodes: list[subprocess.Popen[bytes]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``ray start --block`` in its own session, every port chosen free (two nodes share a host)."""
    ports = [
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    ]
    command = [str(RAY_CLI), "start", "--block", *args, "--node-ip-address", "127.0.0.1"]
    command += ["--num-cpus", "1", "--num-gpus", "1", "--disable-usage-stats"]
    command += ["--object-store-memory", str(256 * 2**20)]
    for flag in ports:
        command += [flag, str(_free_port())]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # no token authentication: the cluster is private to this test and this process
            # connects without a token (Ray turns it on when it finds ~/.ray/auth_token)
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"},
        )


def _stop(nodes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each ``ray start --block`` (it stops its node), then SIGKILL what is left of its
    process group."""
    for node in reversed(nodes):
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    for node in reversed(nodes):
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)


def _wait(
    predicate: Callable[[], bool], what: str, nodes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    deadline = time.monotonic() + 90
    while not predicate():
        if any(n.poll() is not None for n in nodes) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            raise RuntimeError(f"{what} failed:\n{tail}")
        time.sleep(0.3)


def _connect(address: str, nodes: list[subprocess.Popen[bytes]], log: Path) -> None:
    """``ray.init`` to the head, tried again while the head runs (a busy machine can make the
    first attempt time out)."""
    for attempt in range(3):
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            return
        except ConnectionError:
            if attempt == 2 or any(n.poll() is not None for n in nodes):
                raise
            time.sleep(2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not RAY_CLI.is_file():
        pytest.skip(f"no ray command next to {Path(sys.executable).name}")
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths have a limit
    address = f"127.0.0.1:{_free_port()}"
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        try:
            head_log = temp_dir / "head.log"
            head = ["--head", "--port", address.split(":")[1], "--temp-dir", str(temp_dir)]
            nodes.append(_start_node([*head, "--include-dashboard", "false"], head_log))
            _wait(
                lambda: "Ray runtime started" in head_log.read_text(errors="replace"),
                "ray start --head",
                nodes,
                head_log,
            )
            _connect(address, nodes, head_log)
            node_log = temp_dir / "node.log"
            nodes.append(_start_node(["--address", address], node_log))
            _wait(
                lambda: sum(n["Alive"] for n in ray.nodes()) == 2,
                "ray start --address",
                nodes,
                node_log,
            )
        except Exception as exc:  # any start-up failure means: no Ray cluster here
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            pytest.skip(f"cannot start a Ray cluster on 127.0.0.1: {exc}{cause}")
        yield Cluster(address, temp_dir, nodes)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------- model and pool
@pytest.fixture(scope="module")
def model() -> DeepEnsemble:
    """A small trained ensemble over 64 synthetic features and two targets."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 64)).astype(np.float32)
    y = np.stack([x[:, :4].sum(1), np.sin(x[:, 4]) + 0.1 * x[:, 5]], axis=1)
    config = EnsembleConfig(members=8, hidden=(32, 32), max_epochs=3, seed=0)
    return DeepEnsemble(config).fit(
        x,
        y,
        feature_names=[f"f{i}" for i in range(64)],
        target_names=["average_voltage", "max_delta_volume"],
        groups=np.arange(600) // 3,
    )


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    """100,000 synthetic candidates' features, float32."""
    return np.random.default_rng(1).normal(size=(POOL_ROWS, 64)).astype(np.float32)


@pytest.fixture(scope="class")
def scorer(cluster: Cluster) -> Iterator[RayScorer]:
    """Two scoring workers of half a CPU each (one per node: the actors are spread)."""
    s = RayScorer(address=cluster.address, workers=2, cpus_per_worker=0.5)
    try:
        yield s
    finally:
        s.close()


# ------------------------------------------------------------------------------- scoring
def test_local_backend_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "from discovery.campaign.loop import Campaign\n"
        "from discovery.campaign.spec import ComputeSpec\n"
        "from discovery.compute import make_scorer\n"
        "import discovery.propose.strategies\n"
        "assert type(make_scorer(ComputeSpec())).__name__ == 'LocalScorer'\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_local_scoring_reports_its_progress(model: DeepEnsemble, pool: np.ndarray) -> None:
    """The progress bar of local scoring moves after every block and ends at the row count."""
    from discovery.compute.scoring import SCORE_BLOCK

    seen: list[tuple[int, int]] = []
    rows = np.arange(2 * SCORE_BLOCK + 5)
    mean, _ = LocalScorer(lambda done, total: seen.append((done, total))).predict(
        model, pool, rows, CHUNK_ROWS
    )
    assert seen == [(SCORE_BLOCK, len(rows)), (2 * SCORE_BLOCK, len(rows)), (len(rows), len(rows))]
    assert np.array_equal(mean, LocalScorer().predict(model, pool, rows, CHUNK_ROWS)[0])


@on_cluster
class TestScoring:
    def test_equals_local_scoring_on_100k_candidates(
        self, scorer: RayScorer, model: DeepEnsemble, pool: np.ndarray
    ) -> None:
        rows = np.arange(POOL_ROWS)
        mean, std = scorer.predict(model, pool, rows, CHUNK_ROWS)
        local_mean, local_std = LocalScorer().predict(model, pool, rows, CHUNK_ROWS)
        np.testing.assert_allclose(mean, local_mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, local_std, rtol=1e-5, atol=1e-5)
        stats = scorer.stats
        assert stats.chunks == -(-POOL_ROWS // CHUNK_ROWS) == 49
        assert sum(stats.per_worker) == stats.chunks  # every chunk written once
        assert min(stats.per_worker) > 0  # both actors scored
        info = scorer.worker_info()
        assert len({i["node_id"] for i in info}) == 2  # one actor on each node
        assert {i["device"] for i in info} == {"cpu"}  # no GPU requested

    def test_results_follow_the_order_of_the_rows(
        self, scorer: RayScorer, model: DeepEnsemble, pool: np.ndarray
    ) -> None:
        rng = np.random.default_rng(2)
        rows = rng.permutation(POOL_ROWS)[:10_000]
        rows = np.concatenate([rows, rows[:7]])  # a repeated row; 10,007 is no multiple of 2048
        mean, std = scorer.predict(model, pool, rows, CHUNK_ROWS)
        pred = model.predict(pool[rows])
        np.testing.assert_allclose(mean, pred.mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, pred.std, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(mean[-7:], mean[:7], rtol=1e-5, atol=1e-6)
        assert scorer.stats.chunks == 5

    def test_pool_goes_to_the_object_store_once(
        self, scorer: RayScorer, model: DeepEnsemble, pool: np.ndarray
    ) -> None:
        first = scorer._pool_ref
        scorer.predict(model, pool, np.arange(5000), CHUNK_ROWS)
        assert scorer._pool_ref is first  # same array: no second put
        other = pool[:5000].copy()
        mean, _ = scorer.predict(model, other, np.arange(5000), CHUNK_ROWS)
        assert scorer._pool_ref is not first
        np.testing.assert_allclose(mean, model.predict(other).mean, rtol=1e-5, atol=1e-5)

    def test_killed_worker_is_replaced_and_no_chunk_lost_or_doubled(
        self, scorer: RayScorer, model: DeepEnsemble, pool: np.ndarray
    ) -> None:
        victim = scorer.worker_info()[0]["pid"]
        killed: list[int] = []

        def kill_after_four_chunks(done: int, total: int) -> None:
            if done == 4 and not killed:
                os.kill(victim, signal.SIGKILL)  # worker 0 has chunks queued or running
                killed.append(victim)

        scorer.progress = kill_after_four_chunks
        try:
            rows = np.arange(POOL_ROWS)
            mean, std = scorer.predict(model, pool, rows, CHUNK_ROWS)
        finally:
            scorer.progress = None
        assert killed == [victim]
        local_mean, local_std = LocalScorer().predict(model, pool, rows, CHUNK_ROWS)
        np.testing.assert_allclose(mean, local_mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, local_std, rtol=1e-5, atol=1e-5)
        stats = scorer.stats
        assert sum(stats.per_worker) == stats.chunks == 49
        # Ray restarted the actor and re-ran there the calls the dead process held
        assert stats.pids[0] - {victim}
        assert stats.resubmitted == 0
        assert scorer.worker_info()[0]["pid"] != victim

    def test_chunks_of_a_worker_gone_for_good_go_to_the_others(
        self, scorer: RayScorer, model: DeepEnsemble, pool: np.ndarray
    ) -> None:
        gone = scorer._actors[0]

        def end_worker_0(done: int, total: int) -> None:
            if done == 4 and scorer._actors[0] is gone:
                ray.kill(gone, no_restart=True)  # no restart: its chunks must move

        scorer.progress = end_worker_0
        try:
            rows = np.arange(POOL_ROWS)
            mean, _ = scorer.predict(model, pool, rows, CHUNK_ROWS)
        finally:
            scorer.progress = None
        np.testing.assert_allclose(mean, model.predict(pool).mean, rtol=1e-5, atol=1e-5)
        stats = scorer.stats
        assert stats.resubmitted >= 1
        assert sum(stats.per_worker) == stats.chunks == 49
        assert scorer._actors[0] is None  # lost; the next call starts a new one
        assert len({i["pid"] for i in scorer.worker_info()}) == 2
        assert scorer._actors[0] is not gone


# --------------------------------------------------------------------------- GPU placement
@on_cluster
def test_gpu_workers_see_their_own_gpu(
    cluster: Cluster, model: DeepEnsemble, pool: np.ndarray
) -> None:
    import torch

    scorer = RayScorer(address=cluster.address, workers=2, cpus_per_worker=0.5, gpus_per_worker=1)
    try:
        info = scorer.worker_info()
        assert len({i["node_id"] for i in info}) == 2  # one GPU per node: one actor per node
        for i in info:
            assert len(i["gpu_ids"]) == 1
            assert i["cuda_visible_devices"] == ",".join(i["gpu_ids"])
            assert i["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
        rows = np.arange(20_000)
        mean, _ = scorer.predict(model, pool, rows, CHUNK_ROWS)
        np.testing.assert_allclose(mean, model.predict(pool[rows]).mean, rtol=1e-5, atol=1e-5)
    finally:
        scorer.close()
    with pytest.raises(
        ComputeError, match="gpus_per_worker: each worker asks for 2 GPU, the largest node"
    ):
        RayScorer(address=cluster.address, workers=1, gpus_per_worker=2)


# ---------------------------------------------------------------------------- oracle tasks
@on_cluster
def test_oracle_tasks_run_with_their_resources_and_retry_a_lost_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    def where(seconds: float) -> tuple[str, list[str]]:
        time.sleep(seconds)
        return ray.get_runtime_context().get_node_id(), [str(g) for g in ray.get_gpu_ids()]

    handles = [submit_task(where, 1.0, num_cpus=1, num_gpus=1) for _ in range(2)]
    assert finished(handles) == []  # non-blocking: nothing is done yet
    assert not handles[0].ready()
    answers = [h.result(timeout_s=60) for h in handles]
    assert finished(handles) == [0, 1]
    assert len({node for node, _ in answers}) == 2  # both nodes took one: run in parallel
    assert all(len(gpus) == 1 for _, gpus in answers)

    marker = tmp_path / "first-attempt"

    def dies_once(path: str) -> int:
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)  # the worker process is lost mid-task
        return os.getpid()

    assert submit_task(dies_once, str(marker), num_cpus=0.5).result(timeout_s=60) > 0
    assert marker.exists()

    def fails() -> None:
        raise ValueError("relaxation did not converge")

    with pytest.raises(TaskFailed, match="relaxation did not converge"):
        submit_task(fails, num_cpus=0.5).result(timeout_s=60)


# ------------------------------------------------------------------------ whole campaigns
CAMPAIGN = BASE_CAMPAIGN.replace("rounds: 3", "rounds: 2")


@on_cluster
def test_campaign_on_ray_proposes_what_the_local_backend_proposes(
    cluster: Cluster, tmp_path: Path
) -> None:
    from discovery.campaign import Campaign
    from discovery.campaign.ledger import Ledger
    from tests.conftest import synthetic_electrodes

    synthetic_electrodes(n_frameworks=90).to_csv(tmp_path / "electrodes.csv", index=False)
    proposals = {}
    for backend, compute in (("local", ""), ("ray", "compute: {backend: ray, workers: 2}\n")):
        path = tmp_path / f"{backend}.yaml"
        path.write_text(CAMPAIGN + compute)
        campaign = Campaign.from_file(path, workdir=tmp_path / backend)
        assert campaign.run().state == "finished"
        ledger = Ledger(tmp_path / backend / "ledger.sqlite")
        try:
            frame = ledger.proposals()
            proposals[backend] = list(zip(frame["round"], frame["candidate_id"]))
        finally:
            ledger.close()
        if backend == "ray":  # the process's connection (this cluster) was used, then released
            stats = campaign.scorer.stats  # type: ignore[union-attr]
            assert stats.chunks >= 1 and sum(stats.per_worker) == stats.chunks
            assert campaign.scorer._actors == [None, None]  # type: ignore[union-attr]
    assert len(proposals["ray"]) == 6 + 4
    assert proposals["ray"] == proposals["local"]
