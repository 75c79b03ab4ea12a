"""The model layer: models.toml's schema, the kinds that load each model, the registry, the files."""
