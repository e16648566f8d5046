// The entry point (`run`): the stack name picks the environment file, the environment variables
// name the artifacts and the git sha; and the Glue table matches the Rust Parquet schema.

import { strict as assert } from "node:assert";
import { isDeepStrictEqual } from "node:util";

import { MANIFEST_ENV_VAR } from "../src/artifacts";
import contract from "../src/contract.json";
import { PARQUET_COLUMNS, PARTITION_KEYS } from "../src/components/catalog";
import { loadEnvironment } from "../src/config";
import { createPipeline, defaultTags, describeWithCommit, GIT_SHA_ENV_VAR, gitShaFromEnv, run } from "../src/pipeline";
import { artifacts, deploy, writeFixtureManifest } from "./harness";

function withEnv<T>(vars: Record<string, string | undefined>, f: () => Promise<T>): Promise<T> {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    const set = (v: Record<string, string | undefined>) => {
        for (const [k, val] of Object.entries(v)) {
            if (val === undefined) {
                delete process.env[k];
            } else {
                process.env[k] = val;
            }
        }
    };
    set(vars);
    return f().finally(() => set(saved));
}

describe("program entry point", () => {
    it("deploys the stack named by Pulumi with the manifest and git sha from the environment", async () => {
        const manifest = writeFixtureManifest({ gitSha: "feedface" });
        const d = await withEnv({ [MANIFEST_ENV_VAR]: manifest, [GIT_SHA_ENV_VAR]: "c0ffee" }, () =>
            deploy("pr-7", () => run() as unknown as Promise<Record<string, unknown>>),
        );
        assert.equal(d.outputs.environment, "pr-7");
        assert.equal(d.outputs.streamName, "eventpipe-pr-7-events");
        assert.equal(d.outputs.gitSha, "c0ffee");
        assert.equal(d.outputs.artifactGitSha, "feedface");
        assert.equal(d.outputs.region, "eu-west-1");
    });

    it("index.ts exports the program as a function, as the Pulumi CLI expects", async () => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const main: unknown = require("../index");
        assert.equal(typeof main, "function");
        const d = await withEnv({ [MANIFEST_ENV_VAR]: writeFixtureManifest(), [GIT_SHA_ENV_VAR]: undefined }, () =>
            deploy("pr-9", () => (main as () => Promise<Record<string, unknown>>)()),
        );
        assert.equal(d.outputs.transformerFunctionName, "eventpipe-pr-9-transformer");
        assert.equal(d.outputs.gitSha, "unknown");
    });

    it("fails clearly without a manifest", async () => {
        await assert.rejects(
            withEnv({ [MANIFEST_ENV_VAR]: undefined }, () => deploy("pr-8", () => run() as unknown as Promise<Record<string, unknown>>)),
            new RegExp(`${MANIFEST_ENV_VAR} is not set`),
        );
    });

    it("refuses the local environment, which is not a Pulumi stack", async () => {
        await assert.rejects(
            createPipeline({ env: loadEnvironment("local"), artifacts: artifacts(), gitSha: "x" }),
            /not a Pulumi stack/,
        );
    });

    it("a new commit changes no resource but the functions' descriptions, and the outputs", async () => {
        const at = (gitSha: string) =>
            deploy("prod", async () => (await createPipeline({ env: loadEnvironment("prod"), artifacts: artifacts(), gitSha })) as unknown as Record<string, unknown>);
        const [shaA, shaB] = ["1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"];
        const [a, b] = [await at(shaA), await at(shaB)];
        const key = (r: { type: string; name: string }) => `${r.type} ${r.name}`;
        assert.deepEqual(b.resources.map(key), a.resources.map(key));
        const changed: string[] = [];
        a.resources.forEach((ra, i) => {
            const rb = b.resources[i] as (typeof b.resources)[number];
            for (const prop of new Set([...Object.keys(ra.inputs), ...Object.keys(rb.inputs)])) {
                if (!isDeepStrictEqual(ra.inputs[prop], rb.inputs[prop])) {
                    changed.push(`${key(ra)}: ${prop}`);
                }
            }
        });
        assert.deepEqual(changed.sort(), [
            "aws:lambda/function:Function auditor-function: description",
            "aws:lambda/function:Function ingest-stream-processor: description",
            "aws:lambda/function:Function transform-transformer: description",
        ]);
        for (const fn of a.resources.filter((r) => r.type === "aws:lambda/function:Function")) {
            assert.match(fn.inputs.description, new RegExp(`artifact sha256 [0-9a-f]{64}.*${shaA}`));
            assert.ok(fn.inputs.description.length <= 256, "Lambda's description limit");
        }
        assert.equal(a.outputs.gitSha, shaA);
        assert.equal(b.outputs.gitSha, shaB);
        // A GIT_SHA that would not fit Lambda's description limit fails the deployment up front.
        const fn = { type: "aws:lambda/function:Function", name: "f", props: { description: "x".repeat(200) }, opts: {} };
        assert.throws(() => describeWithCommit("a".repeat(40))(fn as any), /longer than Lambda's 256 characters/);
        assert.equal(describeWithCommit(shaA)({ ...fn, type: "aws:sqs/queue:Queue" } as any), undefined);
    });

    it("reads GIT_SHA, or `unknown`, and never lets file tags override the fixed ones", () => {
        assert.equal(gitShaFromEnv({ GIT_SHA: " abc " }), "abc");
        assert.equal(gitShaFromEnv({ GIT_SHA: "" }), "unknown");
        assert.equal(gitShaFromEnv({}), "unknown");
        const env = { ...loadEnvironment("dev"), tags: { owner: "data", environment: "spoofed" } };
        assert.deepEqual(defaultTags(env), { owner: "data", project: "eventpipe", environment: "dev" });
    });
});

describe("catalog", () => {
    it("the table's columns are the generated contract's, with event_type as the partition key", () => {
        const columns = contract.parquet.columns;
        assert.ok(columns.length > 10, "the contract lists the columns");
        assert.deepEqual(
            columns.filter((c) => c.name === "event_type").map((c) => ({ name: c.name, type: c.type })),
            [{ name: "event_type", type: "string" }],
        );
        assert.deepEqual(
            columns.filter((c) => c.name !== "event_type"),
            PARQUET_COLUMNS,
        );
        assert.equal(PARTITION_KEYS[0]?.name, "event_type");
    });
});
