"""The shop's tasks: Django's ``@task`` functions, run by an Oban node."""

from typing import Any

from django.tasks import TaskContext, task

from shop.models import Order


@task
def process_order(order_id: int) -> str:
    order = Order.objects.get(id=order_id)
    order.status = "processed"
    order.save()
    return order.status


@task(queue_name="mail", priority=50)
def add(a: int, b: int, *, times: int = 1) -> dict[str, Any]:
    return {"sum": (a + b) * times, "items": [a, b]}


@task
async def async_greet(name: str) -> str:
    return f"hello {name}"


@task(backend="once")
def refuse(reason: str) -> None:
    raise ValueError(f"refused: {reason}")


@task(takes_context=True)
def flaky(context: TaskContext, label: str) -> dict[str, Any]:
    if context.attempt == 1:
        raise ConnectionError(f"{label}: first attempt fails")
    return {"attempt": context.attempt, "job_id": context.job.id, "label": label}  # type: ignore[attr-defined]


@task
def nothing() -> None:
    return None


@task
def oversized(size: int) -> str:
    import os

    return os.urandom(size).hex()
