"""Images from diffusers pipelines (SD 1.5, SDXL, FLUX.1) loaded from local paths.

``Generator`` applies a weights-toolkit merge plan in place for a request and restores
the base weights afterwards, so consecutive prompts with different experts never reload.
"""
