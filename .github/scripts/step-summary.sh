#!/usr/bin/env bash
# Appends a command's saved output to the job summary: a heading, then the text in a fenced block
# without ANSI colours, cut to fit GitHub's 1 MiB limit per step summary.
#
#   step-summary.sh <title> <file>
set -euo pipefail

title="$1"
file="$2"
max=$((900 * 1024))

{
    printf '### %s\n\n' "$title"
    if [[ -s "$file" ]]; then
        printf '````diff\n'
        sed -e 's/\x1b\[[0-9;?]*[ -\/]*[@-~]//g' "$file" | head -c "$max"
        printf '\n````\n'
        if (($(wc -c <"$file") > max)); then
            printf '\n_Cut to fit the summary: the whole output is in the job log._\n'
        fi
    else
        printf '_No output: the step did not run, or failed before writing any._\n'
    fi
} >>"${GITHUB_STEP_SUMMARY:?GITHUB_STEP_SUMMARY is not set: run this in a GitHub Actions step}"
