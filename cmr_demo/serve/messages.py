"""The app's words for failures that more than one door answers (the page, gradio's routes, the JSON API, the lab):
written once here, so a visitor reads the same sentence whichever way the request came in, and a test that looks
for a sentence finds it in one place. Checks that belong to one value (a k out of range, an unknown objective) keep
their message beside the check (cmr_demo.serve.inputs)."""
from __future__ import annotations


def app_failed(what: str = "the request", retry: str = "Try another query.") -> str:
    """A failure inside the app (a bug, logged in full on the server; no traceback reaches the client)."""
    return f"{what} failed inside the app; it was logged. {retry}"


FILE_SHAPE = ("an image is sent as an uploaded file, {'path': PATH_FROM_THE_UPLOAD_ROUTE, 'meta': {'_type': "
              "'gradio.FileData'}}: upload the picture first (gradio_client.handle_file does both)")
NOT_UPLOADED = ("the image must be a file uploaded to this app (the upload route, or gradio_client.handle_file); "
                "a path on the server is never opened: upload the picture instead")
UPLOAD_GONE = ("the uploaded image is no longer on the server (uploads are deleted once searched with and forgotten "
               "after a while, after 30 minutes unused, or to make room after 5 minutes unused): upload it again")
NO_LENGTH = ("the request must say its size (a Content-Length header; chunked bodies are not accepted here): send it "
             "as a plain request")
SEE_API = "send the endpoint's parameters as listed under 'Use via API' at the bottom of the page"


def picture_too_large(max_bytes: int) -> str:
    return (f"the upload is larger than the {max_bytes / 2 ** 20:.0f} MB this app accepts for an image: resize or "
            f"re-encode the picture (e.g. as JPEG) and upload it again")


def body_too_large(max_bytes: int) -> str:
    return (f"the request body is larger than the {max_bytes / 2 ** 20:.0f} MB this app accepts for anything but a "
            f"picture upload: send a shorter query or fewer items")


def unreadable(what: str) -> str:
    """A request gradio could not read (`what`: a short quote of its complaint)."""
    return f"the request's arguments could not be read ({what}): {SEE_API}"


def busy(waiting: int) -> str:
    """The shared queue is full."""
    return f"the app is busy ({waiting} requests are waiting): try again in a minute"
