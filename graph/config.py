"""Where the graph lives and which embedding model and Chroma server it uses."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class GraphConfig(BaseModel):
    """The graph package's own view of the settings."""

    data_dir: Path = Path(".diffgraph")
    embedding_model: str | None = None
    chroma_url: str | None = None
    collection: str = "experts"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "graph"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"
