# shellcheck shell=bash
# Versions of the tools the image installs from upstream releases. Each download is checked
# against the checksum its publisher serves beside it; the runner against runner-checksums.txt.
export JITR_NODE_VERSION="22.12.0"     # Node.js LTS
export JITR_GO_VERSION="1.23.4"
export JITR_KUBECTL_VERSION="1.31.4"
export JITR_HELM_VERSION="3.16.3"
export JITR_YQ_VERSION="4.44.6"
export JITR_GH_VERSION="2.63.2"
export JITR_COMPOSE_VERSION="2.31.0"
export JITR_BUILDX_VERSION="0.19.3"
