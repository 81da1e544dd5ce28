"""How networks are executed (`torch`, `llamacpp`) and where weights come from (`hub`)."""
