"""jitr on AWS: EC2 runner VMs, SQS queues, a DynamoDB state store and Secrets Manager secrets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jitr-aws")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
