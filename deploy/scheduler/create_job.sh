#!/usr/bin/env bash
# Creates (or updates) the Cloud Scheduler job that launches the cloudfill Flex Template
# every night at 02:30 UTC. The run is incremental: it goes over the whole scenes/ prefix
# and restores only tiles that are new, changed, or made by another model version.
#
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket deploy/scheduler/create_job.sh
#
# Needs: the template built (docs/operations.md, "Flex Template"), a service account
# SCHEDULER_SA allowed to launch Dataflow jobs (roles/dataflow.developer) and to act as
# the worker service account (roles/iam.serviceAccountUser).
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}"
SCHEDULER_SA=${SCHEDULER_SA:-cloudfill-scheduler@${PROJECT}.iam.gserviceaccount.com}
BODY=$(mktemp)
trap 'rm -f "$BODY"' EXIT
sed -e "s/CLOUDFILL_BUCKET/${BUCKET}/g" -e "s/PROJECT/${PROJECT}/g" -e "s/REGION/${REGION}/g" \
  "$(dirname "$0")/launch-body.json" > "$BODY"

ARGS=(
  --location="$REGION"
  --schedule="30 2 * * *"
  --time-zone="Etc/UTC"
  --uri="https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch"
  --http-method=POST
  --headers="Content-Type=application/json"
  --message-body-from-file="$BODY"
  --oauth-service-account-email="$SCHEDULER_SA"
  --oauth-token-scope="https://www.googleapis.com/auth/cloud-platform"
  --attempt-deadline=180s
)
if gcloud scheduler jobs describe cloudfill-nightly --location="$REGION" --project="$PROJECT" >/dev/null 2>&1; then
  gcloud scheduler jobs update http cloudfill-nightly --project="$PROJECT" "${ARGS[@]}"
else
  gcloud scheduler jobs create http cloudfill-nightly --project="$PROJECT" "${ARGS[@]}"
fi
