"""First-party integrations of oban_py: ``oban_py_ext.fastapi``, ``.django``, ``.flask``,
``.sqlalchemy``, ``.otel`` and ``.prometheus``, each needing the extra of the same name
(``pip install 'oban-py[fastapi]'``). Importing this package imports none of them."""
