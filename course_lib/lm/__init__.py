"""Audio language models: a transformer over codec tokens, token layouts, AudioLM's hierarchy, MusicLM's conditioning."""
