"""What every JSON endpoint shares: errors as JSON, allowed methods, the client's address."""

import functools
import logging

from django.db import DatabaseError
from django.http import JsonResponse

from . import errors
from .logs import kv

logger = logging.getLogger(__name__)


def json_errors(view):
    """Answer refused requests and database outages as JSON, never as a 500 traceback."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except errors.RateLimited as exc:
            seconds, client = exc.retry_after, client_address(request)
            logger.info(kv("http.rate_limited", bucket=exc.bucket, client=client, retry_after=seconds))
            response = error(str(exc), status=429)
            response["Retry-After"] = str(seconds)
            return response
        except errors.GameError as exc:
            return error(str(exc), status=exc.status)
        except DatabaseError as exc:
            logger.error(
                kv("http.error", method=request.method, path=request.path, error="database", detail=exc)
            )
            return error("the database is unavailable, try again shortly", status=503)

    return wrapper


def error(message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def allow(*methods: str):
    """Refuse other methods with a JSON 405 and an `Allow` header; HEAD goes wherever GET does."""
    allowed = [*methods, "HEAD"] if "GET" in methods else list(methods)

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                logger.info(
                    kv("http.method_not_allowed", method=request.method[:16], path=request.path[:200])
                )
                response = error(f"method {request.method[:16]} not allowed here", status=405)
                response["Allow"] = ", ".join(allowed)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def client_address(request) -> str:
    """Who the rate limits count: the client's address (daphne --proxy-headers: nginx's)."""
    return request.META.get("REMOTE_ADDR", "")
