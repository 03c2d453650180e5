"""Errors raised by the platform clients; each names the thing, what was expected and the fix."""

from __future__ import annotations

from graph.errors import DiffGraphError


class PlatformError(DiffGraphError):
    """A platform request or response that cannot be used."""


class PlatformHTTPError(PlatformError):
    """A request that failed for good (after retries where retrying makes sense)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(PlatformHTTPError):
    """The platform answered 404: the model, version or file does not exist (any more)."""


class RedirectError(PlatformHTTPError):
    """A redirect loop, or a redirect to a URL DiffGraph refuses to follow."""


class MalformedResponseError(PlatformError):
    """A response body that is not the documented shape."""


class DownloadError(PlatformError):
    """A weight file that could not be downloaded safely."""


class HashMismatchError(DownloadError):
    pass


class FileTooLargeError(DownloadError):
    pass


class UnsafeFileError(DownloadError):
    pass


class DiskSpaceError(DownloadError):
    pass


class NotWeightsError(DownloadError):
    """A download that is no weights file (an HTML page, a JSON error, a broken header) or
    whose size is far from the one the platform declared."""


class SlowDownloadError(DownloadError):
    """A transfer under the minimum rate or over its total deadline (a stalling server)."""


class TimeBudgetError(DownloadError):
    """The crawl's time budget ran out during a download (the partial file is kept)."""


class BrowserUnavailableError(PlatformError):
    pass
