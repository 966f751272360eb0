"""Two views with nothing to them: the examples count requests per view."""

from django.http import HttpResponse, JsonResponse


def hello(request):
    return HttpResponse(b"hello\n")


def items(request):
    return JsonResponse({"items": [1, 2, 3]})
