#!/usr/bin/env bash
# Installs what the nox sessions need beyond Python on a GitHub-hosted Ubuntu runner: shellcheck and
# curl, and with --emulators Google's Firestore and Pub/Sub emulators (Java 17 comes from
# actions/setup-java). Packer and Terraform come from their setup actions.
set -euo pipefail

packages=(shellcheck curl)
if [ "${1:-}" = "--emulators" ]; then
  keyring=/usr/share/keyrings/cloud.google.gpg
  if ! apt-cache policy google-cloud-cli-firestore-emulator | grep -q 'Candidate: [0-9]'; then
    curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo gpg --dearmor --yes -o "$keyring"
    echo "deb [signed-by=$keyring] https://packages.cloud.google.com/apt cloud-sdk main" |
      sudo tee /etc/apt/sources.list.d/google-cloud-sdk.list >/dev/null
  fi
  packages+=(google-cloud-cli google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator)
fi
sudo apt-get update -qq
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
shellcheck --version | head -2
