from catalog import views
from django.urls import path

urlpatterns = [
    path('', views.index, name='index'),
    path('items/<int:pk>/', views.edit_item, name='edit_item'),
    path('items/<int:pk>/delete/', views.delete_item, name='delete_item'),
    path('categories/', views.add_category, name='add_category'),
    path('categories/<int:pk>/delete/', views.delete_category, name='delete_category'),
    path('api/status.json', views.status, name='status'),
]
