from django.contrib import admin
from django.urls import path

from viruses import metrics, views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/viruses/", views.virus_collection, name="virus-collection"),
    path("api/viruses/<str:virus_id>/", views.virus_detail, name="virus-detail"),
    path("api/me/", views.me, name="me"),
    path("api/leaderboard/", views.leaderboard, name="leaderboard"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.view, name="metrics"),
    path("admin/", admin.site.urls),
]
