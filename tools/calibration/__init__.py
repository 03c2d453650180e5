"""Node calibration (paper §3.1): generate and score each expert on the reference prompts.

``calibrate`` writes the scores as graph edges (resumable); ``reference`` picks reference
prompts; ``executor`` runs expert tasks in-process or on Ray actors.
"""
