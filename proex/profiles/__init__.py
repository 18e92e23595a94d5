"""LLM profiles and their embeddings: the ProfileBank every profile-aware plug-in reads."""
