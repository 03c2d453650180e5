"""Two graphs on one Chroma server: namespaced collections, no rebuild on switching."""

from __future__ import annotations

import pytest

from graph.config import GraphConfig
from graph.index import ChromaIndex, make_client
from graph.universal import UniversalGraph
from tests.graph.helpers import expert


@pytest.fixture(autouse=True)
def _through_chroma(monkeypatch):
    monkeypatch.setattr("graph.universal.EXACT_SEARCH_LIMIT", 0)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """One Chroma client every graph gets (as an ``HttpClient`` to one server would be)."""
    client = make_client(tmp_path / "server", None)
    monkeypatch.setattr("graph.universal.make_client", lambda *args: client)
    return client


def _graph(tmp_path, name, embedder, catalogue) -> UniversalGraph:
    config = GraphConfig(data_dir=tmp_path / name, chroma_url="http://chroma.test:8000")
    graph = UniversalGraph(config, embedder=embedder)
    graph.add_experts([expert(i, description=d) for i, d in catalogue])
    return graph


def test_two_graphs_share_a_server_without_overwriting(tmp_path, server, embedder, monkeypatch):
    a = _graph(tmp_path, "a", embedder, [("castle", "medieval stone castle on a hill")])
    b = _graph(tmp_path, "b", embedder, [("robot", "shiny chrome robot, sci-fi")])
    assert a.store.uid != b.store.uid
    names = {c.name for c in server.list_collections()}
    assert any(a.store.uid[:16] in n for n in names) and any(b.store.uid[:16] in n for n in names)
    assert [e.id for e, _ in a.search("a robot", k=5)] == ["castle"]
    assert [e.id for e, _ in b.search("a castle", k=5)] == ["robot"]

    rebuilt = []
    monkeypatch.setattr(ChromaIndex, "rebuild", lambda self: rebuilt.append(self))
    for graph in (a, b):  # switching projects: each finds its own index up to date
        graph.close()
        with UniversalGraph(graph.config, embedder=embedder) as again:
            assert again.search("anything", k=1)
    assert rebuilt == []


def test_a_stale_index_is_rebuilt_only_for_its_graph(tmp_path, server, embedder):
    a = _graph(tmp_path, "a", embedder, [("castle", "medieval stone castle on a hill")])
    b = _graph(tmp_path, "b", embedder, [("robot", "shiny chrome robot, sci-fi")])
    a.store.set_index_stamp(None)  # as if a's index had been lost
    a.close()
    with UniversalGraph(a.config, embedder=embedder) as again:
        assert again.index.revision == again.store.revision  # rebuilt
        assert [e.id for e, _ in again.search("robot", k=5)] == ["castle"]
    assert [e.id for e, _ in b.search("castle", k=5)] == ["robot"]
    b.close()


def test_a_store_without_an_id_gets_one_that_sticks(tmp_path):
    from graph.store import GraphStore

    with GraphStore(tmp_path / "g") as store:
        store._db.execute("DELETE FROM meta WHERE key = 'uid'")  # written before ids existed
        uid = store.uid
        assert len(uid) == 32
    with GraphStore(tmp_path / "g") as store:
        assert store.uid == uid


def test_the_embedded_index_drops_collections_of_earlier_graphs(tmp_path, embedder):
    from graph.index import make_client

    config = GraphConfig(data_dir=tmp_path / "g")
    legacy = make_client(config.chroma_dir, None)
    legacy.get_or_create_collection("experts-peft-sd15")  # the names before graph ids
    legacy.get_or_create_collection("notes")  # not ours: kept
    with UniversalGraph(config, embedder=embedder) as graph:
        graph.add_experts([expert("castle", description="a castle")])
        names = {c.name for c in graph.index._client.list_collections()}
        prefix = f"experts-{graph.store.uid[:16]}-"
    assert "experts-peft-sd15" not in names and "notes" in names
    assert {n for n in names if n.startswith("experts-")} == {
        n for n in names if n.startswith(prefix)
    }
