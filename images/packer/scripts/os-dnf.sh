# shellcheck shell=bash
# Amazon Linux 2023 (dnf): the steps whose packages differ from the apt family.

jitr_os_base() {
  jitr_run dnf -y -q upgrade --releasever=latest
  jitr_run dnf -y -q install --allowerasing \
    curl-minimal ca-certificates tar gzip xz unzip zip git git-lfs jq sudo shadow-utils \
    gcc gcc-c++ make openssl-devel libicu lttng-ust python3 python3-pip
}

jitr_os_docker() {
  jitr_run dnf -y -q install docker
  jitr_run systemctl enable docker
}

jitr_os_cloud_cli() {
  jitr_run dnf -y -q install awscli-2
}

jitr_os_log_agent() {
  jitr_run dnf -y -q install amazon-cloudwatch-agent
  jitr_run systemctl disable amazon-cloudwatch-agent
}

jitr_os_tool_versions() {
  jitr_tool_version aws-cli aws --version
  jitr_tool_version amazon-cloudwatch-agent rpm -q amazon-cloudwatch-agent
  jitr_tool_version gcc gcc --version
}

jitr_os_clean_caches() {
  jitr_run dnf clean all
  rm -rf "$JITR_ROOT/var/cache/dnf"
}
