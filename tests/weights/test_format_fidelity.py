"""Formats other tools write (cloneofsimo ``lora``), the shipped module tables, and what
merged files keep for the tools that read them."""

from __future__ import annotations

import pytest

from graph.records import BaseFamily
from tools.weights import families


@pytest.mark.parametrize("family", list(BaseFamily))
def test_shipped_shape_tables_equal_the_built_models(family):
    shipped = families.parameter_shapes(family)
    built = families.build_parameter_shapes(family)
    assert list(shipped.items()) == list(built.items())


def test_inspect_builds_no_model(tiny_files, monkeypatch):
    from tools.weights.inspect import inspect_expert

    def refuse(*args, **kwargs):
        raise AssertionError("inspect must read the shipped tables, not build models")

    monkeypatch.setattr(families, "build_component", refuse)
    info = inspect_expert(tiny_files["lora_kohya"])
    assert info.format == "kohya-lora" and info.fits_full_size is False
