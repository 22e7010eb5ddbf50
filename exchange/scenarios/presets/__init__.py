"""The presets: a YAML file, or a module with ``build(seed)`` for catalogues too large to write."""
