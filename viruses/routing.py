from django.urls import path

from .consumers import VirusConsumer

websocket_urlpatterns = [
    path("ws/viruses/", VirusConsumer.as_asgi()),
]
