# shellcheck shell=bash
# Steps every OS family shares. Sourced by provision.sh after versions.sh and before os-<family>.sh.
#
# JITR_ROOT (default empty) prefixes every path the build writes; JITR_DRY_RUN=1 records each
# command that would change the system instead of running it (after checking the command
# exists), so a test can walk every branch. The runner download is run even then: it is
# verified against the pinned SHA-256 like in a real build.

JITR_ROOT="${JITR_ROOT:-}"
JITR_DRY_RUN="${JITR_DRY_RUN:-0}"
JITR_SCRIPTS="${JITR_SCRIPTS:-$(dirname "${BASH_SOURCE[0]}")}"
JITR_RUNNER_CHECKSUMS="${JITR_RUNNER_CHECKSUMS:-$JITR_SCRIPTS/runner-checksums.txt}"
JITR_RUNNER_USER="runner"
JITR_RUNNER_DIR="$JITR_ROOT/opt/actions-runner"
JITR_MARKER="$JITR_ROOT/opt/jitr/prebaked-runner-version"
JITR_MANIFEST="$JITR_ROOT/opt/jitr/image-manifest.json"
JITR_BIN="$JITR_ROOT/usr/local/bin"

jitr_log() { printf 'jitr-image: %s\n' "$*"; }
jitr_die() { printf 'jitr-image: %s\n' "$*" >&2; exit 1; }

# Run a command that changes the system, or in a dry run only record it.
jitr_run() {
  if [ "$JITR_DRY_RUN" = 1 ]; then
    # a command an earlier (recorded) step would have installed under JITR_ROOT counts as there
    case "$1" in
      "$JITR_ROOT"/*) ;;
      *) command -v "$1" >/dev/null 2>&1 || jitr_die "dry run: no command '$1' on PATH" ;;
    esac
    printf 'dry-run: %s\n' "$*"
    return 0
  fi
  "$@"
}

# Machine names for the runner architecture (x64 / arm64).
case "${JITR_RUNNER_ARCH:?JITR_RUNNER_ARCH must be x64 or arm64}" in
  x64) JITR_DEB_ARCH=amd64; JITR_UNAME_ARCH=x86_64 ;;
  arm64) JITR_DEB_ARCH=arm64; JITR_UNAME_ARCH=aarch64 ;;
  *) jitr_die "JITR_RUNNER_ARCH must be x64 or arm64, found '$JITR_RUNNER_ARCH'" ;;
esac
export JITR_DEB_ARCH JITR_UNAME_ARCH

# The digest a publisher lists for NAME in the checksum file at SUMS_URL (plain, sha256sum or BSD form).
jitr_published_sha256() {
  local sums
  if [ "$JITR_DRY_RUN" = 1 ]; then
    jitr_run curl -fsSL --retry 5 "$1" >/dev/null
    printf 'dry-run\n'
    return 0
  fi
  sums="$(curl -fsSL --retry 5 "$1")"
  printf '%s\n' "$sums" | awk -v name="$2" '
    $1 == "SHA256" && $2 == "(" name ")" { print $4; exit }
    NF == 1 { print $1; exit }
    { file = $2; sub(/^\*/, "", file); if (file == name) { print $1; exit } }'
}

# Download URL to DEST and check it against SHA256 (a build stops on a mismatch).
jitr_fetch() {
  local url="$1" dest="$2" sha256="$3"
  [ -n "$sha256" ] || jitr_die "no published SHA-256 for $url"
  if [ "$JITR_DRY_RUN" = 1 ]; then
    jitr_run curl -fsSL --retry 5 -o "$dest" "$url"
    return 0
  fi
  curl -fsSL --retry 5 -o "$dest" "$url"
  printf '%s  %s\n' "$sha256" "$dest" | sha256sum -c --status || jitr_die "$url does not match SHA-256 $sha256"
}

jitr_install_release_tools() {
  local tmp arch="$JITR_DEB_ARCH" url
  tmp="$(mktemp -d)"
  mkdir -p "$JITR_BIN" "$JITR_ROOT/usr/local/lib/docker/cli-plugins"

  url="https://dl.k8s.io/release/v${JITR_KUBECTL_VERSION}/bin/linux/${arch}/kubectl"
  jitr_fetch "$url" "$tmp/kubectl" "$(jitr_published_sha256 "$url.sha256" kubectl)"
  jitr_run install -m 0755 "$tmp/kubectl" "$JITR_BIN/kubectl"

  url="https://get.helm.sh/helm-v${JITR_HELM_VERSION}-linux-${arch}.tar.gz"
  jitr_fetch "$url" "$tmp/helm.tgz" "$(jitr_published_sha256 "$url.sha256sum" "helm-v${JITR_HELM_VERSION}-linux-${arch}.tar.gz")"
  jitr_run tar -xzf "$tmp/helm.tgz" -C "$tmp"
  jitr_run install -m 0755 "$tmp/linux-${arch}/helm" "$JITR_BIN/helm"

  url="https://github.com/mikefarah/yq/releases/download/v${JITR_YQ_VERSION}"
  jitr_fetch "$url/yq_linux_${arch}" "$tmp/yq" "$(jitr_published_sha256 "$url/checksums-bsd" "yq_linux_${arch}")"
  jitr_run install -m 0755 "$tmp/yq" "$JITR_BIN/yq"

  url="https://github.com/cli/cli/releases/download/v${JITR_GH_VERSION}"
  jitr_fetch "$url/gh_${JITR_GH_VERSION}_linux_${arch}.tar.gz" "$tmp/gh.tgz" \
    "$(jitr_published_sha256 "$url/gh_${JITR_GH_VERSION}_checksums.txt" "gh_${JITR_GH_VERSION}_linux_${arch}.tar.gz")"
  jitr_run tar -xzf "$tmp/gh.tgz" -C "$tmp"
  jitr_run install -m 0755 "$tmp/gh_${JITR_GH_VERSION}_linux_${arch}/bin/gh" "$JITR_BIN/gh"

  url="https://nodejs.org/dist/v${JITR_NODE_VERSION}"
  local node="node-v${JITR_NODE_VERSION}-linux-${JITR_RUNNER_ARCH}.tar.xz"
  jitr_fetch "$url/$node" "$tmp/node.txz" "$(jitr_published_sha256 "$url/SHASUMS256.txt" "$node")"
  jitr_run mkdir -p "$JITR_ROOT/usr/local/lib/nodejs"
  jitr_run tar -xJf "$tmp/node.txz" -C "$JITR_ROOT/usr/local/lib/nodejs" --strip-components=1
  for tool in node npm npx corepack; do
    jitr_run ln -sf "../lib/nodejs/bin/$tool" "$JITR_BIN/$tool"
  done

  url="https://dl.google.com/go/go${JITR_GO_VERSION}.linux-${arch}.tar.gz"
  jitr_fetch "$url" "$tmp/go.tgz" "$(jitr_published_sha256 "$url.sha256" "go${JITR_GO_VERSION}.linux-${arch}.tar.gz")"
  jitr_run tar -xzf "$tmp/go.tgz" -C "$JITR_ROOT/usr/local"
  jitr_run ln -sf ../go/bin/go "$JITR_BIN/go"
  jitr_run ln -sf ../go/bin/gofmt "$JITR_BIN/gofmt"

  url="https://github.com/docker/compose/releases/download/v${JITR_COMPOSE_VERSION}/docker-compose-linux-${JITR_UNAME_ARCH}"
  jitr_fetch "$url" "$tmp/docker-compose" "$(jitr_published_sha256 "$url.sha256" "docker-compose-linux-${JITR_UNAME_ARCH}")"
  jitr_run install -m 0755 "$tmp/docker-compose" "$JITR_ROOT/usr/local/lib/docker/cli-plugins/docker-compose"

  url="https://github.com/docker/buildx/releases/download/v${JITR_BUILDX_VERSION}"
  local buildx="buildx-v${JITR_BUILDX_VERSION}.linux-${arch}"
  jitr_fetch "$url/$buildx" "$tmp/docker-buildx" "$(jitr_published_sha256 "$url/checksums.txt" "$buildx")"
  jitr_run install -m 0755 "$tmp/docker-buildx" "$JITR_ROOT/usr/local/lib/docker/cli-plugins/docker-buildx"

  # yamllint in its own virtual environment, the same way on every family
  jitr_run python3 -m venv "$JITR_ROOT/opt/jitr/tools/yamllint"
  jitr_run "$JITR_ROOT/opt/jitr/tools/yamllint/bin/pip" install --quiet --no-cache-dir yamllint
  jitr_run ln -sf "../../../opt/jitr/tools/yamllint/bin/yamllint" "$JITR_BIN/yamllint"
  rm -rf "$tmp"
}

# The unprivileged user the runner runs as, allowed to use Docker (and nothing else as root).
jitr_create_runner_user() {
  if ! id -u "$JITR_RUNNER_USER" >/dev/null 2>&1; then
    jitr_run useradd --create-home --shell /bin/bash "$JITR_RUNNER_USER"
  fi
  jitr_run usermod -aG docker "$JITR_RUNNER_USER"
}

# The runner agent, verified against the pinned table, and the marker the startup script reads.
jitr_install_runner() {
  local version="${JITR_RUNNER_VERSION:?JITR_RUNNER_VERSION is required}" sha256 tarball
  sha256="$(awk -v v="$version" -v a="$JITR_RUNNER_ARCH" '$1 == v && $2 == a { print $3 }' "$JITR_RUNNER_CHECKSUMS")"
  [ -n "$sha256" ] || jitr_die "runner $version ($JITR_RUNNER_ARCH) has no line in $JITR_RUNNER_CHECKSUMS"
  tarball="$(mktemp)"
  curl -fsSL --retry 5 -o "$tarball" \
    "https://github.com/actions/runner/releases/download/v${version}/actions-runner-linux-${JITR_RUNNER_ARCH}-${version}.tar.gz"
  printf '%s  %s\n' "$sha256" "$tarball" | sha256sum -c --status \
    || jitr_die "runner ${version} (${JITR_RUNNER_ARCH}) does not match its pinned SHA-256 ${sha256}"
  rm -rf "$JITR_RUNNER_DIR" && mkdir -p "$JITR_RUNNER_DIR"
  tar -xzf "$tarball" -C "$JITR_RUNNER_DIR"
  rm -f "$tarball"
  if [ -x "$JITR_RUNNER_DIR/bin/installdependencies.sh" ]; then
    jitr_run "$JITR_RUNNER_DIR/bin/installdependencies.sh"
  fi
  jitr_run chown -R "$JITR_RUNNER_USER:" "$JITR_RUNNER_DIR"
  mkdir -p "$(dirname "$JITR_MARKER")"
  printf '%s\n' "$version" > "$JITR_MARKER"
  jitr_log "runner $version ($JITR_RUNNER_ARCH) verified and installed; marker written"
}

# One line "name<TAB>version" for a tool: the first line its version command prints.
jitr_tool_version() {
  local name="$1" version
  shift
  if ! command -v "$1" >/dev/null 2>&1; then
    printf '%s\tnot installed\n' "$name"
    return 0
  fi
  version="$("$@" 2>&1 | head -n 1 || true)"
  printf '%s\t%s\n' "$name" "${version:-unknown}"
}

# /opt/jitr/image-manifest.json: the image, and every installed tool with its version.
jitr_write_manifest() {
  local os
  # shellcheck source=/dev/null
  os="$(. "$JITR_ROOT/etc/os-release" 2>/dev/null && printf '%s' "${PRETTY_NAME:-unknown}" || printf unknown)"
  {
    jitr_tool_version actions-runner cat "$JITR_MARKER"
    jitr_tool_version bash bash --version
    jitr_tool_version git git --version
    jitr_tool_version git-lfs git-lfs --version
    jitr_tool_version jq jq --version
    jitr_tool_version yq "$JITR_BIN/yq" --version
    jitr_tool_version docker docker --version
    jitr_tool_version docker-compose "$JITR_ROOT/usr/local/lib/docker/cli-plugins/docker-compose" version
    jitr_tool_version docker-buildx "$JITR_ROOT/usr/local/lib/docker/cli-plugins/docker-buildx" version
    jitr_tool_version python3 python3 --version
    jitr_tool_version node "$JITR_BIN/node" --version
    jitr_tool_version go "$JITR_BIN/go" version
    jitr_tool_version kubectl "$JITR_BIN/kubectl" version --client
    jitr_tool_version helm "$JITR_BIN/helm" version --short
    jitr_tool_version gh "$JITR_BIN/gh" --version
    jitr_tool_version yamllint "$JITR_BIN/yamllint" --version
    jitr_os_tool_versions
  } | python3 -c '
import json, sys
tools = {}
for line in sys.stdin:
    name, _, version = line.rstrip("\n").partition("\t")
    tools[name] = version
image = {"os": sys.argv[1], "cloud": sys.argv[2], "arch": sys.argv[3], "runner_version": sys.argv[4]}
print(json.dumps({"image": image, "tools": tools}, indent=2, sort_keys=True))
' "$os" "${JITR_CLOUD:-unknown}" "$JITR_RUNNER_ARCH" "$JITR_RUNNER_VERSION" > "$JITR_MANIFEST"
  jitr_log "manifest written to $JITR_MANIFEST"
}

# Leave nothing of the build behind: caches, SSH host keys, machine-id, cloud-init state, logs.
jitr_cleanup() {
  jitr_os_clean_caches
  rm -rf "$JITR_ROOT/var/lib/cloud/instances" "$JITR_ROOT/var/lib/cloud/instance" "$JITR_ROOT/var/lib/cloud/data"
  rm -f "$JITR_ROOT"/etc/ssh/ssh_host_*
  if [ -f "$JITR_ROOT/etc/machine-id" ]; then : > "$JITR_ROOT/etc/machine-id"; fi
  rm -f "$JITR_ROOT/var/lib/dbus/machine-id"
  rm -rf "$JITR_ROOT/tmp/jitr-image" "$JITR_ROOT/root/.cache"
  find "$JITR_ROOT/var/log" -type f -exec sh -c 'for f; do : > "$f"; done' jitr-cleanup {} + 2>/dev/null || true
  jitr_log "cleaned up"
}
