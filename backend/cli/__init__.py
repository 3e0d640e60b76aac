"""The ``geovec`` command line: the parser and ``main`` (:mod:`.main`), shared helpers (:mod:`.common`),
search options (:mod:`.regions`), the workflow commands (:mod:`.workflows`) and sub-commands other
packages register (:mod:`.commands`). ``geovec = geovec.backend.cli:main`` is the console script."""

from .main import main

__all__ = ["main"]
