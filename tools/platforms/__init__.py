"""Expert platforms: Civitai, the Hugging Face Hub, local model folders, homepages, downloads.

Clients return typed records (``tools.platforms.records``) and files, never graph nodes.
"""
