"""Worker modules that CLI tests load into ``oban-py start --import``."""
