from django.urls import path
from showcase import views

urlpatterns = [
    path('', views.index, name='index'),
    path('api/state.json', views.state, name='state'),
]
