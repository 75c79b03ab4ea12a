#!/usr/bin/env bash
# Before the new version goes live: fetch the optional models (MobileNet-SSD, SqueezeNet, BlazeFace
# full range) into MYSITE_MODEL_DIR, which lives outside the app folder so every later deploy on
# this instance finds them there, verified, and downloads nothing. Never fails the deploy: a model
# that cannot be had is logged here and its endpoints answer 503 until the next deploy.
set -uo pipefail
source "$(dirname "$0")/../../../deploy/eb_hook_env.sh"
cd "$app_dir" || exit 0
log="${MODELS_HOOK_LOG:-/var/log/mysite-models.log}"
model_dir="${MYSITE_MODEL_DIR:-/var/app/models}"
{
  echo "== $(date -u +%FT%TZ) fetching models into $model_dir"
  if [ -z "$app_python" ]; then
    echo "no Python 3.11+ found: models not fetched"
  else
    mkdir -p "$model_dir" && chmod 755 "$model_dir"
    # Bounded well inside Elastic Beanstalk's command timeout (600 s, .ebextensions). A host that
    # takes over 3 s to accept a connection is remembered in the model folder for an hour and
    # skipped meanwhile: an instance with no route out spends seconds here, not minutes.
    MYSITE_MODEL_DIR="$model_dir" timeout 300 "$app_python" -m mysite.models fetch --timeout 30 --connect-timeout 3
    echo "fetch exited with $? (0: every model there; 1: some failed, their endpoints answer 503)"
    chmod -R a+rX "$model_dir"
  fi
} 2>&1 | tee -a "$log" 2>/dev/null
exit 0
