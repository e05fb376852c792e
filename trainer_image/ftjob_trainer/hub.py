"""Pushing the exported model to the Hugging Face Hub (spec.output.pushToHub).

The token comes the way huggingface_hub reads it: HF_TOKEN (from the job's Secret on the
cluster) or the token `hf auth login` stored. It is checked before training, so a missing
or read-only token fails the job in seconds rather than after hours of training.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from .errors import HubAccessDenied, HubUnavailable


def _explained(repo: str, error: Exception) -> Exception:
    if isinstance(error, LocalTokenNotFoundError):
        return HubAccessDenied(f"pushing to {repo} needs a Hugging Face token: set HF_TOKEN "
                               "(on the cluster: the key `token` of "
                               "spec.output.pushToHub.tokenSecret)")
    if isinstance(error, HfHubHTTPError) and error.response is not None and \
            error.response.status_code in (401, 403):
        return HubAccessDenied(f"the Hugging Face token may not write to {repo}: "
                               f"{error.response.status_code}")
    if isinstance(error, OfflineModeIsEnabled):
        return HubUnavailable(f"cannot push to {repo}: HF_HUB_OFFLINE is set")
    return HubUnavailable(f"cannot reach the Hugging Face Hub to push to {repo}: "
                          f"{type(error).__name__}: {error}")


def check_hub(repo: str) -> None:
    """The token exists and the Hub knows it."""
    try:
        HfApi().whoami()
    # Anything else the HTTP client raises (its own connection errors) means the same.
    except Exception as error:  # noqa: BLE001
        raise _explained(repo, error) from None


def push_folder(folder: Path, repo: str, private: bool, message: str) -> str:
    """Uploads `folder` as one commit to the model repository `repo`; returns its URL."""
    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=message,
                          repo_type="model")
    except Exception as error:  # noqa: BLE001 - as in check_hub
        raise _explained(repo, error) from None
    return f"{api.endpoint}/{repo}"
