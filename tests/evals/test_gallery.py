"""The gallery links each row to its recipe and the recipe's A1111 / ComfyUI exports."""

from __future__ import annotations

from evals.benchmark import BenchmarkReport, MethodSummary, PromptInfo, RowResult, ScoredImage
from evals.gallery import write_gallery


def test_rows_link_to_their_recipe_and_exports(tmp_path):
    run = tmp_path / "images" / "direct"
    run.mkdir(parents=True)
    for name in ("p0.recipe.json", "p0.a1111.txt", "p0.comfyui.json", "p0-0.png"):
        (run / name).write_text("x")
    report = BenchmarkReport(
        demo=False,
        backends={},
        metrics=["aesthetic"],
        prompts=[
            PromptInfo(
                index=0, prompt="a cat", text="a cat", seed=1, selection_mode="llm", selected=[]
            )
        ],
        fixed_experts=[],
        methods=[
            MethodSummary(name=m, label=m, kind="ours", description="") for m in ("direct", "old")
        ],
        rows=[
            RowResult(
                prompt_index=0,
                method=method,
                images=[
                    ScoredImage(path="images/direct/p0-0.png", seed=1, scores={"aesthetic": 1})
                ],
                recipe=recipe,
            )
            for method, recipe in (("direct", "images/direct/p0.recipe.json"), ("old", None))
        ],
    )
    page = write_gallery(report, tmp_path).read_text()
    assert "<a href='images/direct/p0.recipe.json'>recipe</a>" in page
    assert "<a href='images/direct/p0.a1111.txt'>A1111</a>" in page
    assert "<a href='images/direct/p0.comfyui.json'>ComfyUI</a>" in page
    assert page.count("class='files'") == 1  # the row without a recipe links nothing
