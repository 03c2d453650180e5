"""``diffgraph serve``: the web UI (Gradio) over the chat graph, the pipeline and the graph."""
