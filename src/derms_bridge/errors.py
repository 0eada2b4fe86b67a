"""The errors a flow can meet, in the reference's two kinds: business and technical."""

from __future__ import annotations


class FlowError(Exception):
    """Anything that stops one record or one message of a flow."""


class BusinessError(FlowError):
    """The target understood the request and refused it (the reference's ERROR)."""

    def __init__(
        self,
        message: str,
        *,
        status: str = "ERROR",
        message_number: int | None = None,
        http_status: int | None = None,
        refused_by: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.message_number = message_number
        self.http_status = http_status
        #: "CPMCS postAcknowledgement": who refused what, when the connector knows it.
        self.refused_by = refused_by

    @property
    def coded(self) -> str:
        """The target's own words: `VAL-ERROR 10010: Program X is not defined`."""
        number = f" {self.message_number}" if self.message_number is not None else ""
        return f"{self.status}{number}: {self.message}"

    def __str__(self) -> str:
        if self.refused_by is None:
            return self.message
        system, _, operation = self.refused_by.partition(" ")
        return f"{system} refused {operation}: {self.coded}"


class TechnicalFault(FlowError):
    """The target could not be reached or did not answer usefully (the reference's FAILURE)."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        unreachable: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.unreachable = unreachable
        self.timed_out = timed_out


class ConfigurationError(FlowError):
    """The hub's own configuration (a lookup, a connection) cannot serve the message: found
    before any call, and fixed by an operator, not by the target or the sender."""


class LookupMiss(ConfigurationError):
    """A value that the named lookup has no row for; `field`, when the flow knows it, is
    where the value came from (`assetInfo.assetList[0].specification`)."""

    def __init__(self, lookup: str, value: str, *, field: str | None = None) -> None:
        super().__init__(f"lookup {lookup} has no row for {value!r}")
        self.lookup = lookup
        self.value = value
        self.field = field


class FileStorageError(TechnicalFault):
    """A file store (FTP, SFTP, object storage, a local folder) refused or failed an operation.

    The message names the store and the file or folder, never a credential.
    """


class BadFileName(ValueError):
    """A file name that could leave its folder or confuse a store; refused before any call."""


class DatabaseUnavailable(Exception):
    """The hub's own database refused a write or could not be reached (full, read-only,
    locked, down): an outage that passes, not a fault of the message. Nothing of the
    request was kept; the caller may send it again."""


class FileTooLarge(Exception):
    """A received file past the size the settings allow (segments.max_file_bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {limit} bytes")
        self.limit = limit
