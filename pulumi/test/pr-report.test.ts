// The pull request comment script of the preview workflow (.github/scripts/pr-report.js).

import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "./harness";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const report: (args: { github: unknown; context: unknown; core: unknown }) => Promise<void> = require("../../.github/scripts/pr-report.js");

interface Comment {
    id: number;
    body: string;
    user: { type: string };
}

function fakeGithub(existing: Comment[]) {
    const calls: { op: string; body: string; id?: number }[] = [];
    const github = {
        paginate: async (_fn: unknown, _args: unknown) => existing,
        rest: {
            issues: {
                listComments: () => undefined,
                createComment: async (a: { body: string }) => {
                    calls.push({ op: "create", body: a.body });
                    return { data: { id: 99 } };
                },
                updateComment: async (a: { body: string; comment_id: number }) => {
                    calls.push({ op: "update", body: a.body, id: a.comment_id });
                },
            },
        },
    };
    return { github, calls };
}

const context = {
    serverUrl: "https://github.example",
    runId: 7,
    repo: { owner: "o", repo: "r" },
    payload: { pull_request: { number: 42, head: { sha: "0123456789abcdef" } } },
};
const core = { info: () => undefined };

async function withReport(files: Record<string, string>, existing: Comment[]) {
    const dir = tempDir("pr-report-");
    for (const [name, text] of Object.entries(files)) {
        fs.writeFileSync(path.join(dir, name), text);
    }
    const saved = { ...process.env };
    Object.assign(process.env, { RUNNER_TEMP: dir, REPORT_TITLE: "Preview", REPORT_MARKER: "m", REPORT_FILES: "deploy.txt smoke.txt" });
    const { github, calls } = fakeGithub(existing);
    try {
        await report({ github, context, core });
    } finally {
        process.env = saved;
    }
    return calls;
}

describe("pull request report", () => {
    it("creates one comment with every file, without terminal colours", async () => {
        const calls = await withReport({ "deploy.txt": "\u001b[32mok\u001b[0m\nstreamName: s", "smoke.txt": "smoke passed" }, []);
        assert.equal(calls.length, 1);
        const c = calls[0]!;
        assert.equal(c.op, "create");
        assert.ok(c.body.startsWith("<!-- m -->\n### Preview"));
        assert.match(c.body, /#### deploy\.txt\n\n```\nok\nstreamName: s\n```/);
        assert.match(c.body, /#### smoke\.txt\n\n```\nsmoke passed\n```/);
        assert.match(c.body, /Commit 0123456789ab, \[workflow run\]\(https:\/\/github\.example\/o\/r\/actions\/runs\/7\)/);
    });

    it("updates its own earlier comment and says when a step wrote nothing", async () => {
        const calls = await withReport({ "deploy.txt": "x" }, [
            { id: 1, body: "<!-- m -->\nold", user: { type: "User" } },
            { id: 2, body: "<!-- m -->\nold", user: { type: "Bot" } },
        ]);
        assert.deepEqual(calls.map((c) => [c.op, c.id]), [["update", 2]]);
        assert.match(calls[0]!.body, /#### smoke\.txt\n\n_No output/);
    });

    it("truncates long output below GitHub's limit and keeps fences balanced", async () => {
        const calls = await withReport({ "deploy.txt": "y\n".repeat(50000), "smoke.txt": "```\nz" }, []);
        const body = calls[0]!.body;
        assert.ok(body.length < 65536);
        assert.match(body, /_Truncated: the full output is in the \[workflow run\]/);
        assert.equal((body.match(/```/g) ?? []).length % 2, 0);
    });
});
