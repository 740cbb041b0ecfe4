"""A DSN as it may be printed: the user's own string, its password masked."""

from __future__ import annotations

import os
import re
import shlex
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "****"
#: Where the CLI reads a DSN from, most specific first: naming the variable keeps the command
#: pasteable without printing the secret.
DSN_VARIABLES = ("OBAN_DSN", "DATABASE_URL")
# libpq key/value form: password=secret or password='quoted \' string'.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)")


def mask_password(dsn: str) -> str:
    """``dsn`` with the password (URL userinfo, ``?password=`` or ``password=``) as ``****``."""
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)
    parts = urlsplit(dsn)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            masked = [(k, MASK if k == "password" else v) for k, v in pairs]
            query = urlencode(masked, safe="*")
    # Rebuilt by hand: urlunsplit drops the "//" of a DSN with no host (postgresql:///app).
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        rebuilt += f"?{query}"
    if parts.fragment:
        rebuilt += f"#{parts.fragment}"
    return rebuilt


def shell_dsn(dsn: str | None) -> str:
    """The ``--dsn`` argument to print in a command line for ``dsn``."""
    if dsn is None:
        return '"$DATABASE_URL"'
    for variable in DSN_VARIABLES:
        if os.environ.get(variable) == dsn:
            return f'"${variable}"'
    return shlex.quote(mask_password(dsn))
