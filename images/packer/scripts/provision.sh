#!/bin/bash
# Builds a jitr runner image: run as root on the build VM by Packer (see ../build.pkr.hcl).
#
# Environment: JITR_CLOUD (aws or gcp), JITR_RUNNER_VERSION, JITR_RUNNER_ARCH (x64 or arm64);
# JITR_ROOT and JITR_DRY_RUN as described in lib.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export JITR_SCRIPTS="$here"
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"

case "${JITR_CLOUD:?JITR_CLOUD must be aws or gcp}" in
  aws | gcp) ;;
  *) jitr_die "JITR_CLOUD must be aws or gcp, found '$JITR_CLOUD'" ;;
esac

# shellcheck source=/dev/null
family="$(. "$JITR_ROOT/etc/os-release" && printf '%s' "${ID:-}")"
case "$family" in
  amzn)
    # shellcheck source=os-dnf.sh
    . "$here/os-dnf.sh"
    ;;
  ubuntu | debian)
    # shellcheck source=os-apt.sh
    . "$here/os-apt.sh"
    ;;
  *) jitr_die "no provisioning for OS '$family' (expected amzn or ubuntu)" ;;
esac

jitr_log "building a $JITR_CLOUD image on $family ($JITR_RUNNER_ARCH), runner $JITR_RUNNER_VERSION"
jitr_os_base
jitr_os_docker
jitr_install_release_tools
jitr_os_cloud_cli
jitr_os_log_agent
jitr_create_runner_user
jitr_install_runner
jitr_write_manifest
jitr_cleanup
jitr_log "done"
