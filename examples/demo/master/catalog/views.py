"""The master's pages: a catalog to create, edit and delete items, and its outbox state."""

from __future__ import annotations

import os

from demo_common import describe_transport
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from catalog.forms import CategoryForm, ItemForm
from catalog.models import Category, Item
from dj_cqrs.master import outbox


def _backlog() -> dict[str, object]:
    state = outbox.backlog()
    return {'count': state.count, 'oldest_age': state.oldest_age}


def _page(request: HttpRequest, **context: object) -> HttpResponse:
    context.setdefault('form', ItemForm())
    context.setdefault('category_form', CategoryForm())
    context.update(
        items=Item.objects.select_related('category'),
        categories=Category.objects.all(),
        backlog=_backlog(),
        transport=describe_transport(),
        replica_url=os.environ.get('CQRS_DEMO_REPLICA_URL', ''),
        message=request.GET.get('msg', ''),
        highlight=request.GET.get('saved', ''),
    )
    return render(request, 'catalog/index.html', context)


def _done(message: str, saved: int | None = None) -> HttpResponse:
    query = {'msg': message, **({'saved': saved} if saved is not None else {})}
    return redirect(f'{reverse("index")}?{urlencode(query)}')


def index(request: HttpRequest) -> HttpResponse:
    if request.method == 'POST':
        form = ItemForm(request.POST)
        if form.is_valid():
            item = form.save()
            return _done(f'Created “{item.name}” (revision {item.cqrs_revision}).', item.pk)
        return _page(request, form=form)
    return _page(request)


def edit_item(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Item, pk=pk)
    form = ItemForm(request.POST or None, instance=item)
    if request.method == 'POST' and form.is_valid():
        item = form.save()
        return _done(f'Saved “{item.name}” (revision {item.cqrs_revision}).', item.pk)
    return render(
        request,
        'catalog/edit.html',
        {'form': form, 'item': item, 'transport': describe_transport(), 'backlog': _backlog()},
    )


@require_POST
def delete_item(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Item, pk=pk)
    name = item.name
    item.delete()
    return _done(f'Deleted “{name}”.')


@require_POST
def add_category(request: HttpRequest) -> HttpResponse:
    form = CategoryForm(request.POST)
    if form.is_valid():
        category = form.save()
        return _done(f'Created category “{category.name}”.')
    return _page(request, category_form=form)


@require_POST
def delete_category(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    try:
        category.delete()
    except ProtectedError:
        return _done(f'“{category.name}” still has items: delete or move them first.')
    return _done(f'Deleted category “{category.name}”.')


def status(request: HttpRequest) -> JsonResponse:
    """The master's side of the pipeline (the replica's page shows it too)."""
    return JsonResponse(
        {
            'outbox': _backlog(),
            'items': Item.objects.count(),
            'categories': Category.objects.count(),
            'transport': describe_transport(),
        }
    )
