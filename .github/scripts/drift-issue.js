// Keeps one open issue per stack while it has drifted: opens it (or comments on it) when the
// drift check fails, closes it when the check passes again.
//
// Called from actions/github-script in drift.yml. Environment:
//   STACK    the stack checked
//   DRIFTED  "true" when the check failed
"use strict";

module.exports = async function report({ github, context, core }) {
  const stack = process.env.STACK;
  const drifted = process.env.DRIFTED === "true";
  const marker = `<!-- eventpipe-drift-${stack} -->`;
  const run = `${context.serverUrl}/${context.repo.owner}/${context.repo.repo}/actions/runs/${context.runId}`;
  const issues = await github.paginate(github.rest.issues.listForRepo, { ...context.repo, state: "open", per_page: 100 });
  const open = issues.find((i) => !i.pull_request && i.body && i.body.startsWith(marker));
  if (drifted) {
    const line = `The drift check of \`${stack}\` failed: [workflow run](${run}) (its summary shows the differences). Reconcile the stack (docs/troubleshooting.md, "Drift"), then run the drift workflow again.`;
    if (open) {
      await github.rest.issues.createComment({ ...context.repo, issue_number: open.number, body: line });
      core.warning(`drift of ${stack}: commented on issue #${open.number}`);
    } else {
      const created = await github.rest.issues.create({ ...context.repo, title: `Drift on \`${stack}\``, body: `${marker}\n${line}\n` });
      core.warning(`drift of ${stack}: opened issue #${created.data.number}`);
    }
  } else if (open) {
    await github.rest.issues.createComment({ ...context.repo, issue_number: open.number, body: `No drift on \`${stack}\` any more: [workflow run](${run}).` });
    await github.rest.issues.update({ ...context.repo, issue_number: open.number, state: "closed" });
    core.info(`no drift on ${stack}: closed issue #${open.number}`);
  }
};
