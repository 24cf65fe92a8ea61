# shellcheck shell=bash
# Ubuntu 24.04 (apt): the steps whose packages differ from the dnf family.

export DEBIAN_FRONTEND=noninteractive

jitr_os_base() {
  jitr_run apt-get update -qq
  jitr_run apt-get -y -qq upgrade
  jitr_run apt-get -y -qq install --no-install-recommends \
    curl ca-certificates gnupg tar gzip xz-utils unzip zip git git-lfs jq sudo \
    build-essential libssl-dev libicu74 python3 python3-pip python3-venv
}

jitr_os_docker() {
  jitr_run apt-get -y -qq install --no-install-recommends docker.io
  jitr_run systemctl enable docker
}

# gcloud from Google's apt repository (Ubuntu's GCE images may carry it as a snap instead).
jitr_os_cloud_cli() {
  local keyring="$JITR_ROOT/usr/share/keyrings/cloud.google.gpg"
  mkdir -p "$JITR_ROOT/usr/share/keyrings" "$JITR_ROOT/etc/apt/sources.list.d"
  if [ "$JITR_DRY_RUN" = 1 ]; then
    jitr_run gpg --dearmor --yes -o "$keyring"
  else
    curl -fsSL --retry 5 https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor --yes -o "$keyring"
  fi
  printf 'deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main\n' \
    > "$JITR_ROOT/etc/apt/sources.list.d/google-cloud-sdk.list"
  printf 'deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt google-cloud-ops-agent-noble-all main\n' \
    > "$JITR_ROOT/etc/apt/sources.list.d/google-cloud-ops-agent.list"
  jitr_run apt-get update -qq
  jitr_run apt-get -y -qq install --no-install-recommends google-cloud-cli
}

jitr_os_log_agent() {
  jitr_run apt-get -y -qq install --no-install-recommends google-cloud-ops-agent
  jitr_run systemctl disable google-cloud-ops-agent
}

jitr_os_tool_versions() {
  jitr_tool_version gcloud gcloud --version
  # shellcheck disable=SC2016 # dpkg-query's own format, not a shell expansion
  jitr_tool_version google-cloud-ops-agent dpkg-query -W -f '${Version}' google-cloud-ops-agent
  jitr_tool_version gcc gcc --version
}

jitr_os_clean_caches() {
  jitr_run apt-get clean
  rm -rf "$JITR_ROOT"/var/lib/apt/lists/*
}
