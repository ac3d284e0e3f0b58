"""Request-path stages: one thin module each, run by ``workers.runner``."""
