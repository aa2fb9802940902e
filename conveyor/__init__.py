"""Conveyor: a background task queue for Python. See the README for a tour."""

from __future__ import annotations

from conveyor.app import Conveyor
from conveyor.brokers.base import Retention
from conveyor.errors import (
    BrokerUnavailable,
    ConfigurationError,
    ConveyorError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    MissingDependency,
    PayloadTooLarge,
    ResultTimeout,
    SerializationError,
    TaskTimeout,
    UnknownTask,
)
from conveyor.handle import Job
from conveyor.job import ErrorInfo, Status
from conveyor.middleware import Context, Middleware
from conveyor.retry import Backoff, Retry
from conveyor.task import Call, EnqueueOptions, Task
from conveyor.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "BrokerUnavailable",
    "Call",
    "ConfigurationError",
    "Context",
    "Conveyor",
    "ConveyorError",
    "EnqueueOptions",
    "ErrorInfo",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "Middleware",
    "MissingDependency",
    "PayloadTooLarge",
    "ResultTimeout",
    "Retention",
    "Retry",
    "SerializationError",
    "Status",
    "Task",
    "TaskTimeout",
    "UnknownTask",
    "Worker",
    "__version__",
]
