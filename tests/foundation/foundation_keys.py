"""API keys of the foundation's guarded server, shared by its fixture and its tests."""

API_KEYS = ("key-one", "key-two")
