"""Calibration writes scores as graph edges and keeps sample images, resumes, isolates
failures, runs on Ray."""

from __future__ import annotations

import pytest

from graph.records import ExpertKind
from tests.calibration.conftest import PROMPTS, make_expert
from tools.calibration.calibrate import calibrate
from tools.calibration.errors import CalibrationError
from tools.calibration.executor import LocalExecutor
from tools.generation.loading import BaseFamily

SD15 = BaseFamily.SD15


def _edges(graph) -> dict[tuple[str, str], dict[str, float]]:
    arrays = graph.store.arrays()
    out = {}
    for column, (e, r) in enumerate(arrays.edge_index.T.tolist()):
        values = arrays.edge_attr[column]
        out[(arrays.expert_ids[e], arrays.ref_ids[r])] = {
            name: float(values[i]) for i, name in enumerate(arrays.metric_names)
        }
    return out


@pytest.fixture
def executor(worker_spec, local_worker):
    return LocalExecutor(worker_spec, worker=local_worker)


def test_scores_become_edges(graph, experts, executor):
    seen = []
    report = calibrate(
        graph, experts, executor, SD15, PROMPTS, progress=lambda r, i, n: seen.append((i, n))
    )
    assert report.calibrated == {"demo-ckpt": 3, "demo-lora": 3}
    assert report.failures == {} and report.images == 2 * 3 * 2
    assert report.demo is True
    assert seen == [(1, 2), (2, 2)]
    edges = _edges(graph)
    assert len(edges) == 6
    for scores in edges.values():
        assert set(scores) == {"clip_score", "aesthetic"}
    ckpt = [v["aesthetic"] for (e, _), v in edges.items() if e == "demo-ckpt"]
    lora = [v["aesthetic"] for (e, _), v in edges.items() if e == "demo-lora"]
    assert ckpt != lora  # different experts, different images


def test_each_scored_pair_keeps_its_first_image_as_a_sample(graph, experts, executor):
    import io

    from PIL import Image

    from graph.universal import reference_prompt_id

    refs = [reference_prompt_id(p) for p in PROMPTS]
    calibrate(graph, experts, executor, SD15, PROMPTS[:2])
    first = graph.samples("demo-lora", refs)
    assert list(first) == refs[:2]
    stamps = {r: p.stat().st_mtime_ns for r, p in first.items()}
    calibrate(graph, experts, executor, SD15, PROMPTS)  # resumed: only the new prompt
    for expert in experts:
        samples = graph.samples(expert.id, refs)
        assert list(samples) == refs
        for path in samples.values():
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size == (64, 64)  # sampling size
    assert {r: graph.samples("demo-lora", [r])[r].stat().st_mtime_ns for r in refs[:2]} == stamps
    lora, ckpt = (
        graph.samples(e, refs[:1])[refs[0]].read_bytes() for e in ("demo-lora", "demo-ckpt")
    )
    assert lora != ckpt  # each expert's own image
    with Image.open(io.BytesIO(lora)) as image:
        assert len(set(image.getdata())) > 1  # an image, not a blank


def test_thumbnails_shrink_large_images_and_keep_small_ones():
    import io

    import torch
    from PIL import Image

    from tools.calibration.thumbnails import thumbnail_png

    for side, expected in ((512, 128), (96, 96), (32, 32)):
        image = torch.rand(3, side, side, generator=torch.Generator().manual_seed(side))
        with Image.open(io.BytesIO(thumbnail_png(image))) as picture:
            assert picture.size == (expected, expected)
    wide = thumbnail_png(torch.zeros(3, 64, 256))
    with Image.open(io.BytesIO(wide)) as picture:
        assert picture.size == (128, 32)


def test_same_run_same_scores(graph_config, embedder, experts, executor, tmp_path):
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph

    results = []
    for root in (tmp_path / "a", tmp_path / "b"):
        with UniversalGraph(GraphConfig(data_dir=root), embedder) as graph:
            graph.add_experts(experts, embedder.embed([e.description for e in experts]))
            calibrate(graph, experts, executor, SD15, PROMPTS)
            results.append(_edges(graph))
    assert results[0] == results[1]


def test_resumes_without_redoing_scored_pairs(graph, experts, executor):
    first = calibrate(graph, experts, executor, SD15, PROMPTS[:2])
    assert first.calibrated == {"demo-ckpt": 2, "demo-lora": 2}
    before = _edges(graph)
    second = calibrate(graph, experts, executor, SD15, PROMPTS)
    assert second.calibrated == {"demo-ckpt": 1, "demo-lora": 1}
    assert second.skipped == {"demo-ckpt": 2, "demo-lora": 2}
    after = _edges(graph)
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())
    third = calibrate(graph, experts, executor, SD15, PROMPTS)
    assert third.calibrated == {} and third.images == 0


def test_an_interrupted_run_keeps_finished_experts(graph, experts, executor):
    class Interrupted(Exception):
        pass

    def stop_after_first(result, done, total):
        raise Interrupted

    with pytest.raises(Interrupted):
        calibrate(graph, experts, executor, SD15, PROMPTS, progress=stop_after_first)
    assert {e for e, _ in _edges(graph)} == {"demo-ckpt"}
    report = calibrate(graph, experts, executor, SD15, PROMPTS)
    assert report.calibrated == {"demo-lora": 3}
    assert report.skipped == {"demo-ckpt": 3}


def test_failing_experts_are_recorded_and_the_run_goes_on(
    graph, experts, executor, expert_files, embedder
):
    bad = [
        make_expert("demo-broken", ExpertKind.CKPT, expert_files["broken"]),
        make_expert("demo-missing", ExpertKind.PEFT, None),
    ]
    graph.add_experts(bad, embedder.embed([e.description for e in bad]))
    report = calibrate(graph, [bad[0], experts[0], bad[1]], executor, SD15, PROMPTS)
    assert report.calibrated == {"demo-ckpt": 3}
    assert set(report.failures) == {"demo-broken", "demo-missing"}
    assert "safetensors" in report.failures["demo-broken"]
    assert "no local weights file" in report.failures["demo-missing"]
    assert report.unusable == {"demo-broken", "demo-missing"} and report.exit_code == 2


def test_wrong_family_and_no_prompts(graph, experts, executor):
    with pytest.raises(CalibrationError, match="no reference prompts"):
        calibrate(graph, experts, executor, SD15)
    report = calibrate(graph, experts[:1], executor, BaseFamily.SDXL, PROMPTS)
    assert "base model is sdxl" in report.failures["demo-ckpt"]


def test_ray_gives_the_same_scores_as_in_process(
    graph_config, embedder, experts, executor, worker_spec, tmp_path
):
    ray = pytest.importorskip("ray")
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tools.calibration.executor import RayExecutor

    results, samples = [], []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = RayExecutor(worker_spec, workers=2)
        for name, runner in (("local", executor), ("ray", remote)):
            with UniversalGraph(GraphConfig(data_dir=tmp_path / name), embedder) as graph:
                graph.add_experts(experts, embedder.embed([e.description for e in experts]))
                report = calibrate(graph, experts, runner, SD15, PROMPTS)
                assert report.calibrated == {"demo-ckpt": 3, "demo-lora": 3}
                results.append(_edges(graph))
                samples.append(
                    {
                        (e.id, r): path.read_bytes()
                        for e in experts
                        for r, path in graph.samples(
                            e.id, graph.store.calibrated_pairs(e.id)
                        ).items()
                    }
                )
        remote.close()
    finally:
        ray.shutdown()
    local, distributed = results
    assert local.keys() == distributed.keys()
    for key, scores in local.items():
        assert distributed[key] == pytest.approx(scores, abs=1e-4), key
    assert len(samples[0]) == 6 and samples[0].keys() == samples[1].keys()  # back from the actors
