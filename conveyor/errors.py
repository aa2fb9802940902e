"""Every failure a Conveyor user can meet has its own exception class here."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises."""


class ConfigurationError(ConveyorError):
    """A setting is wrong: an unknown broker URL scheme, a bad option value, a bad app path."""


class MissingDependency(ConfigurationError):
    """A broker needs an optional extra that is not installed (the message names it)."""


class BrokerUnavailable(ConveyorError):
    """The broker cannot be reached or refused the operation."""


class SerializationError(ConveyorError, TypeError):
    """A task argument or result cannot be encoded as JSON."""


class PayloadTooLarge(ConveyorError, ValueError):
    """An encoded job payload is larger than the configured limit."""


class UnknownTask(ConveyorError, LookupError):
    """A worker was handed a job for a task name it has not registered."""


class JobNotFound(ConveyorError, LookupError):
    """No job with that id exists (it never did, or retention removed it)."""


class JobFailed(ConveyorError):
    """The job ended in ``failed``: every attempt raised. ``error`` holds the last one."""

    def __init__(self, job_id: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error_type}: {message}")
        self.job_id = job_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback


class JobCancelled(ConveyorError):
    """The job was cancelled before it could produce a result."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class ResultTimeout(ConveyorError, TimeoutError):
    """``Job.result(timeout=...)`` gave up before the job finished."""


class TaskTimeout(ConveyorError, TimeoutError):
    """A task ran longer than its ``timeout`` and was stopped."""
