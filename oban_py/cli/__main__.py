"""``python -m oban_py.cli``: the ``oban-py`` command (how ``start --processes`` runs its nodes)."""

from oban_py.cli import main

main()
