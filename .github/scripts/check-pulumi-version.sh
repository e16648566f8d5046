#!/usr/bin/env bash
# Fails unless the Pulumi CLI on PATH is the version the workflow pins (`PULUMI_VERSION`).
set -euo pipefail

want="v${PULUMI_VERSION:?PULUMI_VERSION is not set: the workflow pins the Pulumi CLI version in env}"
have="$(pulumi version)"
if [[ "$have" != "$want" ]]; then
    echo "::error title=Pulumi CLI::installed $have, expected $want"
    exit 1
fi
echo "Pulumi CLI $have"
