"""Airflow DAG: restore last night's scenes with cloudfill on Dataflow GPU workers.

Each run restores the scenes of its logical date (``{{ ds }}``) into one
output folder. The pipeline is incremental, so a retried or re-triggered run
does only what is missing or out of date (new inputs, another model version).

The task runs ``deploy/flex-template/main.py`` (uploaded to ``PY_FILE``) in a
virtualenv with the cloudfill package, which builds the job and submits it to
Dataflow with the GPU container image; the task waits for the job, then
``cloudfill run`` exits with its status: 0 all restored or skipped, 3 some
tiles dead-lettered (the task fails, so someone looks at ``failed/``), 1 the
pipeline failed, 2 a bad model or bad options (nothing was written).

Requires ``apache-airflow-providers-apache-beam`` and
``apache-airflow-providers-google``.
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

PROJECT = "my-project"
REGION = "us-central1"
BUCKET = "my-cloudfill-bucket"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/cloudfill/cloudfill-gpu:0.1.0"
PY_FILE = f"gs://{BUCKET}/templates/cloudfill_main.py"  # deploy/flex-template/main.py
# The launcher's environment must match the image (Python 3.11, Beam 2.77.0): install
# the same cloudfill build, e.g. from the project's Artifact Registry Python repository.
CLOUDFILL_REQUIREMENT = "cloudfill==0.1.0"

with DAG(
    dag_id="cloudfill_nightly",
    description="Restore cloud gaps in last night's tiles (cloudfill on Dataflow GPUs)",
    schedule="30 2 * * *",
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # One run at a time may write into the output folder.
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=20)},
    tags=["cloudfill"],
) as dag:
  restore = BeamRunPythonPipelineOperator(
      task_id="restore",
      runner="DataflowRunner",
      py_file=PY_FILE,
      py_interpreter="python3.11",
      py_requirements=[CLOUDFILL_REQUIREMENT],
      py_system_site_packages=False,
      pipeline_options={
          # cloudfill run's flags (the shim maps large_model to --large-model, …).
          "images": f"gs://{BUCKET}/scenes/{{date}}/*.tif",
          "masks": f"gs://{BUCKET}/masks/{{date}}/{{stem}}.png",
          "date": "{{ ds }}",
          "output": f"gs://{BUCKET}/restored",
          "model": f"gs://{BUCKET}/models/cloudfill-pconv/current",
          "config": "landsat8_l1",
          "accelerator": "type:nvidia-l4;count:1;install-nvidia-driver",
          "large_model": True,
          "model_copies": 1,
          "max_batch_size": 32,
          "no_report": True,
          # Wait for the job and exit with cloudfill's status (3: some tiles dead-lettered).
          "wait": True,
          # Beam / Dataflow options.
          "sdk_container_image": IMAGE,
          "sdk_location": "container",
          "experiments": ["use_runner_v2"],
          "machine_type": "g2-standard-8",
          "max_num_workers": 8,
          "temp_location": f"gs://{BUCKET}/dataflow/tmp",
          "staging_location": f"gs://{BUCKET}/dataflow/staging",
          "service_account_email": f"cloudfill-runner@{PROJECT}.iam.gserviceaccount.com",
      },
      dataflow_config=DataflowConfiguration(
          job_name="cloudfill-nightly-{{ ds_nodash }}",
          project_id=PROJECT,
          location=REGION,
          wait_until_finished=True,
      ),
  )
