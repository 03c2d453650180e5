"""Expert weights: file formats, canonical adapters, merge methods, streaming, application.

Import from the submodules (``tools.weights.experts``, ``.plan``, ``.apply``, ``.stream``,
``.methods``); this package module stays import-light for the CLI.
"""
