"""User errors at the page's edge: the service's `InputError` becomes `gr.Error` with its message; anything else is
logged once and answered plainly, with no traceback sent to the browser."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging

import gradio as gr

from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.messages import app_failed

log = logging.getLogger(__name__)


# an error stays on screen until the next search closes it (browser.FRESH_JS): on a timer it vanished while the page
# still pointed to it, and a timer set for one error closed the next one too when gradio grouped them
KEEP_ON_SCREEN = None


@contextlib.contextmanager
def reported(name: str):
    try:
        yield
    except InputError as err:  # the user's mistake, not the app's: no traceback in the server log
        raise gr.Error(str(err), print_exception=False, duration=KEEP_ON_SCREEN) from None
    except gr.Error:
        raise
    except Exception:
        log.exception("request failed in %s", name)
        raise gr.Error(app_failed(),
                       duration=KEEP_ON_SCREEN) from None


def user_errors(fn):
    """InputError -> gr.Error with its message; anything else is logged and reported without a traceback.
    Generators (live updates) stay generators, so gradio streams them."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            with reported(fn.__name__):
                yield from fn(*args, **kwargs)
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with reported(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper
