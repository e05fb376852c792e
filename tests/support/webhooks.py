"""Admission webhooks of controllers run as local processes (Kubeflow's training operator
in the bench, Kueue in the tests): served on 127.0.0.1 with a throwaway certificate, and
registered by URL, since there is no Service in front of them."""

from __future__ import annotations

import base64
import subprocess
import urllib.request
from pathlib import Path


def serving_certificate(folder: Path) -> bytes:
    """A self-signed certificate for 127.0.0.1 (tls.crt, tls.key in `folder`, the names
    controller-runtime reads); returns the certificate, the webhooks' CA bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
                   check=True, capture_output=True)
    return (folder / "tls.crt").read_bytes()


def client_config(port: int, path: str, ca_bundle: bytes) -> dict:
    """A webhook's clientConfig for a server on 127.0.0.1:`port`."""
    return {"url": f"https://127.0.0.1:{port}{path}",
            "caBundle": base64.b64encode(ca_bundle).decode()}


def ready(port: int, path: str = "/readyz") -> bool:
    """Whether a controller's health endpoint on 127.0.0.1 answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
