"""One module per command, named after it: each takes an opened checkpoint (and a searcher
or table) and returns a result dataclass. ``suites`` runs the evaluation suites of
``analogy --file`` and ``compare --pairs``."""
