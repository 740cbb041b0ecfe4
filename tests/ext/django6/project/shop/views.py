from django.db import transaction
from django.http import HttpRequest, JsonResponse

from shop.models import Order
from shop.tasks import process_order


def place_order(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "book"))
        result = process_order.enqueue(order.id)
        if request.POST.get("fail"):
            # After the enqueue, inside the block: the order and its job go together.
            raise RuntimeError("payment declined")
    return JsonResponse({"id": order.id, "result_id": result.id})
