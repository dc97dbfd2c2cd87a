"""Small example families that plug into the engine by module path (``docs/extending.md``)."""
