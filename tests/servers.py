"""Real object-storage servers on loopback, started by the tests.

* :func:`gcs_emulator`: ``gcp-storage-emulator`` (the GCS JSON API) in a
  subprocess; Beam's ``gs://`` filesystem reaches it through
  ``STORAGE_EMULATOR_HOST``.
* :func:`s3_server`: moto's S3 server in a thread; Beam's ``s3://``
  filesystem reaches it through ``--s3_endpoint_url``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    with socket.socket() as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        return
    time.sleep(0.1)
  raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def gcs_emulator(bucket: str = "cloudfill-test") -> Iterator[str]:
  """Starts the GCS emulator with ``bucket``; yields its ``http://host:port``.

  Sets ``STORAGE_EMULATOR_HOST`` (and an anonymous project) for this process
  and its children while it runs.
  """
  port = free_port()
  data_dir = tempfile.mkdtemp(prefix="gcs-emulator-")
  exe = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
  proc = subprocess.Popen(
      [exe, "-d", data_dir, "start", "--host", "127.0.0.1", "--port",
       str(port), "--default-bucket", bucket, "-q"],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE)
  host = f"http://127.0.0.1:{port}"
  saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
  try:
    wait_for_port(port)
    os.environ["STORAGE_EMULATOR_HOST"] = host
    os.environ["GOOGLE_CLOUD_PROJECT"] = "cloudfill-test"
    _anonymous_gcp_credentials()
    yield host
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


def _anonymous_gcp_credentials() -> None:
  """Tells Beam, in this process, that there are no Google credentials.

  Beam otherwise retries ``google.auth.default()`` for ~30 s before it
  connects anonymously, which is what the emulator wants anyway.
  """
  from apache_beam.internal.gcp import auth  # pylint: disable=import-outside-toplevel
  with auth._Credentials._credentials_lock:  # pylint: disable=protected-access
    auth._Credentials._credentials = None  # pylint: disable=protected-access
    auth._Credentials._credentials_init = True  # pylint: disable=protected-access


def s3_bucket_options(port: int, bucket: str) -> dict:
  """Creates ``bucket`` on the S3 server at ``port`` (moto's test credentials); returns its
  ``endpoint`` and Beam's S3 options (``beam_args``)."""
  import boto3  # pylint: disable=import-outside-toplevel
  endpoint = f"http://127.0.0.1:{port}"
  creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
  boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket=bucket)
  return {
      "endpoint":
          endpoint,
      "beam_args": [
          f"--s3_endpoint_url={endpoint}", "--s3_access_key_id=testing", "--s3_secret_access_key=testing",
          "--s3_region_name=us-east-1"
      ]
  }


@contextlib.contextmanager
def s3_server(bucket: str = "cloudfill-test") -> Iterator[dict]:
  """Starts moto's S3 server with ``bucket``; yields Beam's S3 options."""
  from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel
  port = free_port()
  server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
  server.start()
  try:
    yield s3_bucket_options(port, bucket)
  finally:
    server.stop()


def upload_tree(local_dir: str, dest_prefix: str) -> None:
  """Copies a local folder to ``dest_prefix`` through Beam's filesystems."""
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  for root, _, files in os.walk(local_dir):
    for name in files:
      src = os.path.join(root, name)
      rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
      with open(src, "rb") as f, FileSystems.create(dest_prefix.rstrip("/") + "/" + rel) as out:
        out.write(f.read())
