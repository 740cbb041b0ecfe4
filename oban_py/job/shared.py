"""Values many jobs share until one of them is read, so that building a job allocates only
what differs between jobs: the empty fields, and the set of fields given.

A new job holds an empty ``meta``, ``tags`` and ``errors`` of its own, as pydantic's
``default_factory`` gives it. Three containers a job, built thousands at a time, are what sets
off the cyclic garbage collector's full passes over the whole heap: they cost a job built in a
loop more than building it (``Worker.new`` took 4.5 µs with the collector on, 2 µs with it off).
The builds that make most jobs (``Worker.new``, the jobs an insert returns) store the shared
``EMPTY_LIST`` and ``EMPTY_DICT`` instead, and a read of the field through the job (``Owned``)
swaps in a new list or dict of the job's own before handing it out. So each job's values stay
its own to change, as before; only code that reads ``job.__dict__`` sees the shared ones, and
those refuse every change, so a slip there fails loudly instead of changing every job.

Likewise the set of fields given (``model_fields_set``) may be a frozenset shared by every job of
one kind (one worker's, every row's columns): the first read through the model gives the job a
set of its own (``own_fields_set``).

Two jobs that read the same empty field at the same moment from two threads could each get a
new value, one of them lost: as for any other change to one job from two threads at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel

_GET_DICT = BaseModel.__dict__["__dict__"].__get__
_GET_FIELDS = BaseModel.__dict__["__pydantic_fields_set__"].__get__
_SET_FIELDS = BaseModel.__dict__["__pydantic_fields_set__"].__set__


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise TypeError("a shared empty value of many jobs: read it through the job's field")


class SharedList(list[Any]):
    """An empty list that refuses every change; copies of it are itself, and it pickles by name
    (as a plain list, every reference to it would unpickle as one list, shared by the jobs)."""

    __slots__ = ()

    if not TYPE_CHECKING:
        append = extend = insert = remove = pop = clear = sort = reverse = _refuse
        __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __copy__(self) -> SharedList:
        return self

    def __deepcopy__(self, memo: Any) -> SharedList:
        return self

    def __reduce__(self) -> str:
        return "EMPTY_LIST"


class SharedDict(dict[str, Any]):
    """An empty dict that refuses every change; copies of it are itself, and it pickles by name
    (see ``SharedList``)."""

    __slots__ = ()

    if not TYPE_CHECKING:
        clear = pop = popitem = setdefault = update = _refuse
        __setitem__ = __delitem__ = __ior__ = _refuse

    def __copy__(self) -> SharedDict:
        return self

    def __deepcopy__(self, memo: Any) -> SharedDict:
        return self

    def __reduce__(self) -> str:
        return "EMPTY_DICT"


EMPTY_LIST = SharedList()
EMPTY_DICT = SharedDict()


class Owned:
    """A model field that may hold ``EMPTY_LIST`` or ``EMPTY_DICT``: reading it gives the job a
    new empty one of its own first. A data descriptor, so it is asked before the instance's
    ``__dict__``; pydantic's own ``__setattr__`` writes ``__dict__`` itself, as for any field."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, job: BaseModel | None, owner: type[Any] | None = None) -> Any:
        if job is None:
            return self
        values = _GET_DICT(job)
        value = values[self._name]
        if value is EMPTY_LIST:
            value = values[self._name] = []
        elif value is EMPTY_DICT:
            value = values[self._name] = {}
        return value

    def __set__(self, job: BaseModel, value: Any) -> None:
        # Only ``object.__setattr__`` comes here: set it as pydantic's ``__setattr__`` does.
        _GET_DICT(job)[self._name] = value
        job.__pydantic_fields_set__.add(self._name)


def own_when_read(model: type[BaseModel], *fields: str) -> None:
    """Make ``fields`` of ``model`` ``Owned``: they may hold the shared empty values."""
    for name in fields:
        if name not in model.model_fields:
            raise ValueError(f"{model.__name__} has no field {name!r}")
        setattr(model, name, Owned(name))


def _fields_set(job: BaseModel) -> set[str]:
    fields = _GET_FIELDS(job)
    if fields.__class__ is frozenset:
        fields = set(fields)
        _SET_FIELDS(job, fields)
    return fields  # type: ignore[no-any-return]


def own_fields_set(model: type[BaseModel]) -> None:
    """Let the jobs of ``model`` hold a frozenset of given fields (shared by many): every read
    of ``__pydantic_fields_set__``, pydantic's included, gives the job its own set first. The
    property shadows pydantic's slot, which it reads and writes underneath."""
    model.__pydantic_fields_set__ = property(_fields_set, _SET_FIELDS)  # type: ignore[assignment]
