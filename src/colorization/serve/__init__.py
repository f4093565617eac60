"""Serve: the REST service and its web page (``colorization serve``).

==============================  ===============================================================
:mod:`~.service`                the FastAPI app (:func:`create_app`, :class:`ServiceConfig`)
:mod:`~.serving`                bounded inference queue, socket binding, uvicorn runner, error
                                bodies (also used by the rating study)
:mod:`~.service_hints`          hint points sent in the upload form
``static/``                     the page (HTML, JS, CSS, icon), served from the package
==============================  ===============================================================

:mod:`~.serving` imports neither torch nor FastAPI; :mod:`~.service` needs the ``serve`` extra.
The names below load on first use.
"""

from __future__ import annotations

from colorization._lazy import lazy_exports

_EXPORTS = {
    "create_app": "service",
    "ServiceConfig": "service",
    "ServiceError": "service",
    "InferenceQueue": "serving",
    "DEFAULT_QUEUE_SIZE": "serving",
    "run_app": "serving",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
