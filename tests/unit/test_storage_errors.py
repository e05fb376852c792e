"""Storage failures are classified on exception types and S3 error codes, including the
OSErrors s3fs raises from botocore's, never on the message (which holds the URI)."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from fsspec.exceptions import FSTimeoutError
from s3fs.errors import translate_boto_error

from ftjob_trainer.errors import ConfigError, StorageAccessDenied, StorageUnavailable
from ftjob_trainer.storage import classify

URI = "s3://bucket-403-accessdenied/job"  # words a substring match would misread


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def through_s3fs(error: ClientError) -> BaseException:
    """What s3fs raises for it: an OSError whose cause is botocore's error."""
    try:
        raise translate_boto_error(error) from error
    except BaseException as translated:  # noqa: BLE001
        return translated


@pytest.mark.parametrize("error,expected", [
    (client_error("AccessDenied", 403), StorageAccessDenied),
    (through_s3fs(client_error("AccessDenied", 403)), StorageAccessDenied),
    (through_s3fs(client_error("InvalidAccessKeyId", 403)), StorageAccessDenied),
    (through_s3fs(client_error("SignatureDoesNotMatch", 403)), StorageAccessDenied),
    (NoCredentialsError(), StorageAccessDenied),
    (through_s3fs(client_error("NoSuchBucket", 404)), ConfigError),
    (through_s3fs(client_error("404", 404)), ConfigError),      # no S3 error body
    (through_s3fs(client_error("501", 501)), ConfigError),
    (client_error("503", 503), StorageUnavailable),             # a gateway, worth a retry
    (through_s3fs(client_error("SlowDown", 503)), StorageUnavailable),
    (through_s3fs(client_error("InternalError", 500)), StorageUnavailable),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
    (FSTimeoutError(), StorageUnavailable),
    (asyncio.TimeoutError(), StorageUnavailable),
    (ConnectionRefusedError(111, "refused"), StorageUnavailable),
    (OSError("Connection reset: 403 AccessDenied in a proxy page"), StorageUnavailable),
    (PermissionError(13, "Permission denied"), StorageAccessDenied),
])
def test_storage_errors_are_classified_on_structure(error, expected):
    classified = classify(URI, error)
    assert type(classified) is expected, classified
    assert URI in str(classified)


def test_an_endpoint_that_is_no_s3_server_is_named():
    assert "is the endpoint URL an S3 server?" in str(
        classify(URI, through_s3fs(client_error("404", 404))))
