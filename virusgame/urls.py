from django.contrib import admin
from django.urls import path

from viruses import metrics, views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/viruses/", views.virus_collection, name="virus-collection"),
    path("api/viruses/<str:virus_id>/", views.virus_detail, name="virus-detail"),
    path("api/me/", views.me, name="me"),
    path("api/leaderboard/", views.leaderboard, name="leaderboard"),
    # Rooms: the same endpoints, scoped to the room of the code (any case).
    path("r/<str:code>/", views.index, name="room"),
    path("api/rooms/", views.room_collection, name="room-collection"),
    path("api/rooms/<str:code>/", views.room_detail, name="room-detail"),
    path("api/rooms/<str:code>/viruses/", views.virus_collection, name="room-virus-collection"),
    path("api/rooms/<str:code>/viruses/<str:virus_id>/", views.virus_detail, name="room-virus-detail"),
    path("api/rooms/<str:code>/leaderboard/", views.leaderboard, name="room-leaderboard"),
    path("api/rooms/<str:code>/round/", views.room_round, name="room-round"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.view, name="metrics"),
    path("admin/", admin.site.urls),
]
