"""AutoLoRA (arXiv 2508.02107) inside DiffGraph: a baseline on the same graph and experts.

- Weight-encoder retrieval: ``encoder`` (LoRA weights → embedding in the text encoder's
  space), ``contrastive`` (symmetric InfoNCE training), ``retrieval``
  (``AutoLoraRetriever``, ``make_retriever``), ``features`` (planner node features).
- Fine-grained gated fusion: ``gates``, ``branches`` (LoRA and global-LoRA branches),
  ``fusion`` (``gated_fusion`` hooks on a loaded pipeline), ``fusion_training``
  (interference-resistant gate training), ``losses``; ``generate`` (``generate_gated``,
  ``checkpoint_plan``).
- ``train`` / ``cli``: ``diffgraph train-autolora encoder|fusion``.

Import from the submodules; this package module stays import-light for the CLI.
"""
