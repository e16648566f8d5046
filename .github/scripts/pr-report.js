// Posts (or updates) one pull request comment with the output of earlier steps.
//
// Called from actions/github-script. Environment:
//   REPORT_TITLE   heading of the comment
//   REPORT_MARKER  identifies the comment, so later runs update it instead of adding another
//   REPORT_FILES   space-separated file names in $RUNNER_TEMP, shown in that order
"use strict";

const fs = require("node:fs");
const path = require("node:path");

// GitHub rejects comments over 65536 characters; leave room for the heading and the fences.
const MAX_BODY = 60000;
const ANSI = /\u001b\[[0-9;?]*[ -\/]*[@-~]/g;

function section(file) {
  const full = path.join(process.env.RUNNER_TEMP || "", file);
  if (!fs.existsSync(full)) {
    return `#### ${file}\n\n_No output: the step did not run or failed before writing any._\n`;
  }
  const text = fs.readFileSync(full, "utf8").replace(ANSI, "").replace(/`{3,}/g, "``\u200b`").trimEnd();
  return `#### ${file}\n\n\`\`\`\n${text || "(empty)"}\n\`\`\`\n`;
}

module.exports = async function report({ github, context, core }) {
  const marker = `<!-- ${process.env.REPORT_MARKER} -->`;
  const run = `${context.serverUrl}/${context.repo.owner}/${context.repo.repo}/actions/runs/${context.runId}`;
  const files = (process.env.REPORT_FILES || "").split(/\s+/).filter(Boolean);
  let body = `${marker}\n### ${process.env.REPORT_TITLE}\n\nCommit ${context.payload.pull_request.head.sha.slice(0, 12)}, [workflow run](${run}).\n\n${files.map(section).join("\n")}`;
  if (body.length > MAX_BODY) {
    const head = body.slice(0, MAX_BODY);
    const insideFence = (head.match(/```/g) || []).length % 2 === 1;
    body = `${head}${insideFence ? "\n```" : ""}\n\n_Truncated: the full output is in the [workflow run](${run})._\n`;
  }
  const issue_number = context.payload.pull_request.number;
  const comments = await github.paginate(github.rest.issues.listComments, { ...context.repo, issue_number, per_page: 100 });
  const existing = comments.find((c) => c.user && c.user.type === "Bot" && c.body && c.body.startsWith(marker));
  if (existing) {
    await github.rest.issues.updateComment({ ...context.repo, comment_id: existing.id, body });
    core.info(`updated comment ${existing.id}`);
  } else {
    const created = await github.rest.issues.createComment({ ...context.repo, issue_number, body });
    core.info(`created comment ${created.data.id}`);
  }
};
