"""The app's fine-tuning service: a persistent queue of training processes shared by visitors, with owners,
caps, retention and disk quotas (`queue`), and the checks between a visitor's request and the queue (`service`).

The training itself is `cast.train`; this package is what a web app adds around it.
"""
from .queue import Job, JobLimits, JobQueue
from .service import JobRequest, JobService

__all__ = ["Job", "JobLimits", "JobQueue", "JobRequest", "JobService"]
