from django.db import transaction
from django.http import HttpRequest, JsonResponse
from oban_py_ext.django import enqueue

from orders.models import Order
from orders.workers import NotifyCustomer, ProcessOrder


def place_order(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "book"))
        # Both jobs commit with the order, or vanish with it if anything here raises.
        enqueue(ProcessOrder.new({"order_id": order.id}))
        enqueue(NotifyCustomer.new({"order_id": order.id}))
    return JsonResponse({"id": order.id})
