// The bootstrap stack's documents (bootstrap/policies.ts) under the IAM policy simulator: who may
// assume each deployer role, what the preview deployer can never do, and what the permissions
// boundary leaves to a role that is given everything. Every denial here is paired with the request
// that is allowed, so that no test passes because nothing is allowed at all.

import { strict as assert } from "node:assert";

import { isWildcardOnlyAction } from "@cloud-copilot/iam-simulate";

import { classBoundaryArn, DEPLOYED_CLASSES, environmentClass, type DeployedClass } from "../src/boundary";
import { extraNames, names } from "../src/names";
import { allFacts } from "../bootstrap/facts";
import {
    boundaryPolicyDocument,
    checkRepository,
    deployerPolicyDocuments,
    deployerRoleName,
    oidcProviderArn,
    READER_CLASSES,
    readerPolicyDocuments,
    roleName,
    secretsKeyAlias,
    stateBucketName,
    stateKeyAlias,
    stateKeyPolicyDocument,
    trustPolicyDocument,
    type BootstrapFacts,
    type PolicyDocument,
} from "../bootstrap/policies";
import { assumeWithWebIdentity, decide, decideStrictly, decideWithFullContext, type Decision, type Principal, type Request } from "../bootstrap/simulate";
import { ACCOUNT_ID } from "./harness";

const REPOSITORY = "example-org/eventpipe";
const PARTITION = "aws";
const FACTS = allFacts({ accountId: ACCOUNT_ID, partition: PARTITION, repository: REPOSITORY });
const PROJECT = FACTS.dev.project;
const REGION = FACTS.dev.region;
const TLS = { "aws:SecureTransport": "true" };

const env = (name: string) => ({ project: PROJECT, name });
const roleArn = (name: string) => `arn:aws:iam::${ACCOUNT_ID}:role/${name}`;
const boundaryOf = (name: string) => classBoundaryArn(PROJECT, environmentClass(name), ACCOUNT_ID, PARTITION);
const stateObject = (key: string) => `arn:aws:s3:::${stateBucketName(PROJECT, ACCOUNT_ID)}/${key}`;
const keyArn = (id: string) => `arn:aws:kms:${REGION}:${ACCOUNT_ID}:key/${id}`;

function deployer(envClass: DeployedClass, facts: BootstrapFacts = FACTS[envClass]): Principal {
    return {
        arn: roleArn(deployerRoleName(PROJECT, envClass)),
        accountId: ACCOUNT_ID,
        identity: deployerPolicyDocuments(facts).map((p) => p.document),
    };
}

async function expectDecision(principal: Principal, request: Request, expected: Decision | "denied", resourcePolicy?: unknown): Promise<void> {
    const decision = await decideStrictly(principal, { ...request, context: { ...TLS, ...request.context } }, resourcePolicy);
    const ok = expected === "denied" ? decision !== "Allowed" : decision === expected;
    assert.ok(ok, `${principal.arn}: ${request.action} on ${request.resource} with ${JSON.stringify(request.context ?? {})}: ${decision}, expected ${expected}`);
}
const allowed = (p: Principal, r: Request, rp?: unknown) => expectDecision(p, r, "Allowed", rp);
const denied = (p: Principal, r: Request, rp?: unknown) => expectDecision(p, r, "denied", rp);
const explicitlyDenied = (p: Principal, r: Request, rp?: unknown) => expectDecision(p, r, "ExplicitlyDenied", rp);

/** The key policy the pipeline program gives its keys: the account administers them through IAM. */
const PIPELINE_KEY_POLICY: PolicyDocument = {
    Version: "2012-10-17",
    Statement: [{ Sid: "AccountAdministersKeyThroughIam", Effect: "Allow", Principal: { AWS: `arn:aws:iam::${ACCOUNT_ID}:root` }, Action: "kms:*", Resource: "*" }],
};
const keyTags = (environment: string) => ({ "aws:ResourceTag/project": PROJECT, "aws:ResourceTag/environment": environment });

describe("bootstrap: who may assume the deployer roles", () => {
    const provider = oidcProviderArn(PARTITION, ACCOUNT_ID);
    const assume = (envClass: DeployedClass, claims: { sub?: string; aud?: string }, trust = trustPolicyDocument(FACTS[envClass])) =>
        assumeWithWebIdentity(trust, roleArn(deployerRoleName(PROJECT, envClass)), provider, ACCOUNT_ID, claims);
    const job = (suffix: string, aud = "sts.amazonaws.com") => ({ sub: `repo:${REPOSITORY}:${suffix}`, aud });

    const rightJobs: Record<DeployedClass, string[]> = {
        dev: ["environment:dev"],
        prod: ["environment:prod"],
        preview: ["pull_request", "environment:preview-cleanup"],
    };
    const otherJobs = [
        "environment:dev",
        "environment:prod",
        "environment:preview",
        "environment:preview-cleanup",
        "environment:prod-canary",
        "pull_request",
        "ref:refs/heads/main",
        "ref:refs/tags/v1.0.0",
        "job_workflow_ref:example-org/eventpipe/.github/workflows/deploy.yml@refs/heads/main",
    ];

    for (const envClass of DEPLOYED_CLASSES) {
        describe(envClass, () => {
            for (const suffix of rightJobs[envClass]) {
                it(`a job with sub ${suffix} of this repository, for STS, may assume it`, async () => {
                    assert.equal(await assume(envClass, job(suffix)), "Allowed");
                });
            }
            for (const suffix of otherJobs.filter((s) => !rightJobs[envClass].includes(s))) {
                it(`a job with sub ${suffix} may not`, async () => {
                    assert.notEqual(await assume(envClass, job(suffix)), "Allowed");
                });
            }
            it("a job of another repository, or of a repository whose name extends this one's, may not", async () => {
                const suffix = rightJobs[envClass][0] as string;
                for (const repo of ["someone-else/eventpipe", "example-org/eventpipe-fork", "example-org/eventpip", "EXAMPLE-ORG/EVENTPIPE"]) {
                    assert.notEqual(await assume(envClass, { sub: `repo:${repo}:${suffix}`, aud: "sts.amazonaws.com" }), "Allowed", repo);
                }
            });
            it("a token for another audience, or without one, or without a subject, may not", async () => {
                const suffix = rightJobs[envClass][0] as string;
                assert.notEqual(await assume(envClass, job(suffix, "https://github.com/example-org")), "Allowed");
                assert.notEqual(await assume(envClass, { sub: job(suffix).sub }), "Allowed");
                assert.notEqual(await assume(envClass, { aud: "sts.amazonaws.com" }), "Allowed");
            });
            it("only the GitHub provider of this account is trusted", async () => {
                const trust = trustPolicyDocument(FACTS[envClass]);
                const suffix = rightJobs[envClass][0] as string;
                const role = roleArn(deployerRoleName(PROJECT, envClass));
                for (const other of [oidcProviderArn(PARTITION, "210987654321"), `arn:aws:iam::${ACCOUNT_ID}:oidc-provider/gitlab.com`]) {
                    assert.notEqual(await assumeWithWebIdentity(trust, role, other, ACCOUNT_ID, job(suffix)), "Allowed", other);
                }
            });
        });
    }

    it("a pull_request token cannot assume the prod role even if the subject check is widened to a wildcard", async () => {
        // The guard that makes the tests above able to fail: a trust policy that tests `sub` with
        // StringLike `repo:<repo>:*` lets a pull request in; the real one does not.
        const loose = trustPolicyDocument(FACTS.prod);
        const statement = loose.Statement[0];
        assert.ok(statement?.Condition?.StringEquals);
        const { [`token.actions.githubusercontent.com:sub`]: _sub, ...rest } = statement.Condition.StringEquals;
        statement.Condition = { StringEquals: rest, StringLike: { "token.actions.githubusercontent.com:sub": `repo:${REPOSITORY}:*` } };
        assert.equal(await assume("prod", job("pull_request"), loose), "Allowed");
        assert.notEqual(await assume("prod", job("pull_request")), "Allowed");
    });

    it("a trust policy that forgets the audience lets any audience in (so the audience tests can fail)", async () => {
        const loose = trustPolicyDocument(FACTS.dev);
        const statement = loose.Statement[0];
        assert.ok(statement?.Condition?.StringEquals);
        delete statement.Condition.StringEquals["token.actions.githubusercontent.com:aud"];
        assert.equal(await assume("dev", job("environment:dev", "https://github.com/example-org"), loose), "Allowed");
        assert.notEqual(await assume("dev", job("environment:dev", "https://github.com/example-org")), "Allowed");
    });

    it("refuses a repository that is not exactly owner/name", () => {
        for (const bad of ["example-org/*", "example-org", "*", "example-org/eventpipe:ref:x", "a/b/c", ""]) {
            assert.throws(() => checkRepository(bad), /owner\/name/, bad);
            assert.throws(() => trustPolicyDocument({ ...FACTS.dev, repository: bad }), /owner\/name/, bad);
        }
        assert.equal(checkRepository("example-org/event.pipe_2"), "example-org/event.pipe_2");
    });
});

describe("bootstrap: the preview deployer (the code of any pull request)", () => {
    const preview = deployer("preview");
    const own = "pr-42";
    const ownNames = names(env(own), ACCOUNT_ID);
    const ownExtra = extraNames(env(own), ACCOUNT_ID);
    const prodNames = names(env("prod"), ACCOUNT_ID);
    const prodExtra = extraNames(env("prod"), ACCOUNT_ID);
    const ownRole = roleArn(ownExtra.streamProcessorRole);
    const prodRole = roleArn(prodExtra.streamProcessorRole);

    describe("roles", () => {
        it("creates a role only with the preview boundary", async () => {
            const create = (boundary?: string): Request => ({
                action: "iam:CreateRole",
                resource: ownRole,
                context: boundary ? { "iam:PermissionsBoundary": boundary } : {},
            });
            await allowed(preview, create(boundaryOf(own)));
            await explicitlyDenied(preview, create());
            await explicitlyDenied(preview, create(boundaryOf("dev")));
            await explicitlyDenied(preview, create(boundaryOf("prod")));
            await explicitlyDenied(preview, create(`arn:aws:iam::aws:policy/AdministratorAccess`));
        });

        for (const action of ["iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy"]) {
            it(`${action} only on a role that carries the preview boundary`, async () => {
                const on = (boundary?: string): Request => ({
                    action,
                    resource: ownRole,
                    context: boundary ? { "iam:PermissionsBoundary": boundary } : {},
                });
                await allowed(preview, on(boundaryOf(own)));
                await explicitlyDenied(preview, on());
                await explicitlyDenied(preview, on(boundaryOf("prod")));
            });
        }

        it("never removes a boundary, and sets none but its own", async () => {
            await explicitlyDenied(preview, { action: "iam:DeleteRolePermissionsBoundary", resource: ownRole, context: { "iam:PermissionsBoundary": boundaryOf(own) } });
            await allowed(preview, { action: "iam:PutRolePermissionsBoundary", resource: ownRole, context: { "iam:PermissionsBoundary": boundaryOf(own) } });
            await explicitlyDenied(preview, { action: "iam:PutRolePermissionsBoundary", resource: ownRole, context: { "iam:PermissionsBoundary": boundaryOf("dev") } });
        });

        it("never edits a boundary policy or a deployer role", async () => {
            for (const cls of DEPLOYED_CLASSES) {
                for (const action of ["iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion"]) {
                    await explicitlyDenied(preview, { action, resource: boundaryOf(cls === "preview" ? own : cls) });
                }
                const deployerRole = roleArn(deployerRoleName(PROJECT, cls));
                await explicitlyDenied(preview, { action: "iam:PutRolePolicy", resource: deployerRole, context: { "iam:PermissionsBoundary": boundaryOf(own) } });
                await explicitlyDenied(preview, { action: "iam:UpdateAssumeRolePolicy", resource: deployerRole, context: { "iam:PermissionsBoundary": boundaryOf(own) } });
            }
        });

        it("passes its own roles to Lambda only", async () => {
            await allowed(preview, { action: "iam:PassRole", resource: ownRole, context: { "iam:PassedToService": "lambda.amazonaws.com" } });
            await denied(preview, { action: "iam:PassRole", resource: ownRole, context: { "iam:PassedToService": "ec2.amazonaws.com" } });
            await denied(preview, { action: "iam:PassRole", resource: prodRole, context: { "iam:PassedToService": "lambda.amazonaws.com" } });
            await denied(preview, { action: "iam:PassRole", resource: roleArn(deployerRoleName(PROJECT, "prod")), context: { "iam:PassedToService": "lambda.amazonaws.com" } });
        });

        it("cannot change prod's roles, even naming prod's boundary", async () => {
            await denied(preview, { action: "iam:PutRolePolicy", resource: prodRole, context: { "iam:PermissionsBoundary": boundaryOf("prod") } });
            await denied(preview, { action: "iam:DeleteRole", resource: prodRole, context: { "iam:PermissionsBoundary": boundaryOf("prod") } });
        });
    });

    describe("state", () => {
        const object = (prefix: string) => stateObject(`${prefix}/.pulumi/stacks/${PROJECT}/${prefix === "preview" ? own : prefix}.json`);
        const list = (prefix: string): Request => ({
            action: "s3:ListBucket",
            resource: `arn:aws:s3:::${stateBucketName(PROJECT, ACCOUNT_ID)}`,
            context: { "s3:prefix": prefix },
        });

        it("reads and writes the state of preview stacks", async () => {
            for (const action of ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]) {
                await allowed(preview, { action, resource: object("preview") });
            }
            await allowed(preview, list(`preview/.pulumi/locks/${PROJECT}/${own}/`));
        });

        it("cannot read or write prod's state, nor the bootstrap stack's", async () => {
            for (const action of ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]) {
                await denied(preview, { action, resource: object("prod") });
                await denied(preview, { action, resource: stateObject(`bootstrap/.pulumi/stacks/${PROJECT}-bootstrap/${ACCOUNT_ID}.json`) });
            }
            await denied(preview, list("prod/.pulumi/"));
            await denied(preview, list("bootstrap/"));
            await denied(preview, list(""));
        });

        it("reads dev's state (the dev preview of a pull request) but never writes it", async () => {
            await allowed(preview, { action: "s3:GetObject", resource: object("dev") });
            await allowed(preview, list("dev/.pulumi/stacks/"));
            await denied(preview, { action: "s3:PutObject", resource: object("dev") });
            await denied(preview, { action: "s3:DeleteObject", resource: stateObject(`dev/.pulumi/locks/${PROJECT}/dev/lock.json`) });
        });

        it("uses the state key only through S3, for the state bucket, and its own secrets key, never prod's", async () => {
            const stateKey = keyArn("1111aaaa-2222-3333-4444-555566667777");
            const bucket = `arn:aws:s3:::${stateBucketName(PROJECT, ACCOUNT_ID)}`;
            const viaS3 = {
                ...TLS,
                "kms:ViaService": `s3.${REGION}.amazonaws.com`,
                "kms:ResourceAliases": [stateKeyAlias(PROJECT)],
                "kms:EncryptionContext:aws:s3:arn": bucket,
            };
            const keyPolicy = stateKeyPolicyDocument({ project: PROJECT, accountId: ACCOUNT_ID, region: REGION, partition: PARTITION });
            const use = (context: Record<string, string | string[]>) => decideWithFullContext(preview, { action: "kms:Decrypt", resource: stateKey, context }, keyPolicy);
            assert.equal(await use(viaS3), "Allowed");
            assert.equal(await use({ ...viaS3, "kms:EncryptionContext:aws:s3:arn": `${bucket}/preview/.pulumi/meta.yaml` }), "Allowed");
            assert.equal(await use({ ...viaS3, "kms:ViaService": `secretsmanager.${REGION}.amazonaws.com` }), "ExplicitlyDenied");
            assert.equal(await use({ ...viaS3, "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::another-bucket" }), "ExplicitlyDenied");
            const { "kms:ViaService": _direct, ...direct } = viaS3;
            assert.equal(await use(direct), "ExplicitlyDenied");
            // Without the key policy's denies, a direct call would pass IAM's condition only through S3: still denied.
            assert.notEqual(await decideWithFullContext(preview, { action: "kms:Decrypt", resource: stateKey, context: direct }, PIPELINE_KEY_POLICY), "Allowed");

            const secretsKey = keyArn("2222bbbb-2222-3333-4444-555566667777");
            await allowed(preview, { action: "kms:Encrypt", resource: secretsKey, context: { "kms:ResourceAliases": [secretsKeyAlias(PROJECT, "preview")] } }, PIPELINE_KEY_POLICY);
            await denied(preview, { action: "kms:Decrypt", resource: secretsKey, context: { "kms:ResourceAliases": [secretsKeyAlias(PROJECT, "prod")] } }, PIPELINE_KEY_POLICY);
            await denied(preview, { action: "kms:Encrypt", resource: secretsKey, context: { "kms:ResourceAliases": [secretsKeyAlias(PROJECT, "dev")] } }, PIPELINE_KEY_POLICY);
        });
    });

    describe("prod's resources", () => {
        // [action on prod's, own resource, prod's resource, the action on its own when it differs]
        const pairs: [string, string, string, string?][] = [
            // The deployer writes no objects, not even its own: it deletes them (emptying a bucket).
            ["s3:PutObject", `arn:aws:s3:::${ownNames.raw_bucket}/raw/x.json`, `arn:aws:s3:::${prodNames.raw_bucket}/raw/x.json`, "s3:DeleteObject"],
            ["s3:GetObject", `arn:aws:s3:::${ownNames.processed_bucket}/processed/x.parquet`, `arn:aws:s3:::${prodNames.processed_bucket}/processed/x.parquet`],
            ["s3:DeleteBucket", `arn:aws:s3:::${ownNames.raw_bucket}`, `arn:aws:s3:::${prodNames.raw_bucket}`],
            ["s3:PutBucketPolicy", `arn:aws:s3:::${ownNames.raw_bucket}`, `arn:aws:s3:::${prodNames.raw_bucket}`],
            ["lambda:UpdateFunctionCode", `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${ownNames.stream_processor}`, `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${prodNames.stream_processor}`],
            ["lambda:UpdateFunctionConfiguration", `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${ownNames.transformer}`, `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${prodNames.transformer}`],
            ["kinesis:PutRecords", `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${ownNames.stream}`, `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${prodNames.stream}`],
            ["kinesis:DeleteStream", `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${ownNames.stream}`, `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${prodNames.stream}`],
            ["dynamodb:DeleteTable", `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${ownNames.metadata_table}`, `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${prodNames.metadata_table}`],
            ["sqs:SetQueueAttributes", `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${ownNames.stream_dlq}`, `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${prodNames.stream_dlq}`],
            ["secretsmanager:PutSecretValue", `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${ownNames.hmac_secret}-AbCdEf`, `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${prodNames.hmac_secret}-AbCdEf`],
            ["logs:DeleteLogGroup", `arn:aws:logs:${REGION}:${ACCOUNT_ID}:log-group:${ownExtra.streamProcessorLogGroup}`, `arn:aws:logs:${REGION}:${ACCOUNT_ID}:log-group:${prodExtra.streamProcessorLogGroup}`],
            ["cloudwatch:DeleteAlarms", `arn:aws:cloudwatch:${REGION}:${ACCOUNT_ID}:alarm:${ownNames.stream_dlq}-not-empty`, `arn:aws:cloudwatch:${REGION}:${ACCOUNT_ID}:alarm:${prodNames.stream_dlq}-not-empty`],
            ["glue:DeleteTable", `arn:aws:glue:${REGION}:${ACCOUNT_ID}:table/${ownExtra.glueDatabase}/events`, `arn:aws:glue:${REGION}:${ACCOUNT_ID}:table/${prodExtra.glueDatabase}/events`],
            ["kms:CreateAlias", `arn:aws:kms:${REGION}:${ACCOUNT_ID}:${ownExtra.kmsAlias}`, `arn:aws:kms:${REGION}:${ACCOUNT_ID}:${prodExtra.kmsAlias}`],
            ["events:DeleteRule", `arn:aws:events:${REGION}:${ACCOUNT_ID}:rule/${ownExtra.auditorSchedule}`, `arn:aws:events:${REGION}:${ACCOUNT_ID}:rule/${prodExtra.auditorSchedule}`],
        ];
        for (const [action, ownArn, prodArn, ownAction] of pairs) {
            it(`${action}: on pr-42's, not on prod's`, async () => {
                const context: Record<string, string> = action.startsWith("s3:") ? { "s3:ResourceAccount": ACCOUNT_ID } : {};
                await allowed(preview, { action: ownAction ?? action, resource: ownArn, context });
                await denied(preview, { action, resource: prodArn, context });
            });
        }

        it("points its own schedules at its own functions only", async () => {
            const rule = (extra: typeof ownExtra) => `arn:aws:events:${REGION}:${ACCOUNT_ID}:rule/${extra.auditorSchedule}`;
            const fn = (n: typeof ownNames) => `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${n.auditor}`;
            const putTargets = (resource: string, targets?: string[]) => ({
                action: "events:PutTargets",
                resource,
                context: targets ? ({ "events:TargetArn": targets } as Record<string, string[]>) : {},
            });
            await allowed(preview, putTargets(rule(ownExtra), [fn(ownNames)]));
            await denied(preview, putTargets(rule(ownExtra), [fn(prodNames)]));
            await denied(preview, putTargets(rule(ownExtra), [fn(ownNames), fn(prodNames)]));
            await denied(preview, putTargets(rule(ownExtra)));
            await denied(preview, putTargets(rule(prodExtra), [fn(ownNames)]));
        });

        it("cannot use, delete or claim a key of prod (keys are the class's by their tags)", async () => {
            const key = keyArn("3333cccc-2222-3333-4444-555566667777");
            for (const action of ["kms:Decrypt", "kms:ScheduleKeyDeletion", "kms:PutKeyPolicy"]) {
                await allowed(preview, { action, resource: key, context: keyTags(own) }, PIPELINE_KEY_POLICY);
                await denied(preview, { action, resource: key, context: keyTags("prod") }, PIPELINE_KEY_POLICY);
            }
            const retag = { "aws:RequestTag/project": PROJECT, "aws:RequestTag/environment": own, "aws:TagKeys": ["project", "environment"] };
            await allowed(preview, { action: "kms:TagResource", resource: key, context: { ...keyTags(own), ...retag } }, PIPELINE_KEY_POLICY);
            await explicitlyDenied(preview, { action: "kms:TagResource", resource: key, context: { ...keyTags("prod"), ...retag } }, PIPELINE_KEY_POLICY);
            await explicitlyDenied(preview, { action: "kms:TagResource", resource: key, context: { ...keyTags("bootstrap"), ...retag } }, PIPELINE_KEY_POLICY);
            await explicitlyDenied(preview, { action: "kms:UntagResource", resource: key, context: { ...keyTags("prod"), "aws:TagKeys": ["environment"] } }, PIPELINE_KEY_POLICY);
        });

        it("creates keys only tagged as its own", async () => {
            const tagged = (environment: string) => ({ "aws:RequestTag/project": PROJECT, "aws:RequestTag/environment": environment, "aws:TagKeys": ["project", "environment"] });
            await allowed(preview, { action: "kms:CreateKey", resource: "*", context: tagged(own) });
            await denied(preview, { action: "kms:CreateKey", resource: "*", context: tagged("prod") });
            await denied(preview, { action: "kms:CreateKey", resource: "*" });
        });

        it("cannot change the mode of any stream, nor reach the network or the trail of prod", async () => {
            await denied(preview, { action: "kinesis:UpdateStreamMode", resource: "*" });
            await allowed(deployer("prod"), { action: "kinesis:UpdateStreamMode", resource: "*" });
            const vpc = `arn:aws:ec2:${REGION}:${ACCOUNT_ID}:vpc/vpc-0123`;
            await denied(preview, { action: "ec2:DeleteVpc", resource: vpc, context: { "aws:ResourceTag/project": PROJECT, "aws:ResourceTag/environment": "prod" } });
            await allowed(deployer("prod"), { action: "ec2:DeleteVpc", resource: vpc, context: { "aws:ResourceTag/project": PROJECT, "aws:ResourceTag/environment": "prod" } });
            const trail = `arn:aws:cloudtrail:${REGION}:${ACCOUNT_ID}:trail/${prodExtra.trail}`;
            await denied(preview, { action: "cloudtrail:StopLogging", resource: trail });
            await allowed(deployer("prod"), { action: "cloudtrail:StopLogging", resource: trail });
        });

        it("never reads the PII key, even its own", async () => {
            const secret = `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${ownNames.hmac_secret}-AbCdEf`;
            await denied(preview, { action: "secretsmanager:GetSecretValue", resource: secret });
            await allowed(preview, { action: "secretsmanager:DescribeSecret", resource: secret });
        });
    });

    it("the dev and prod deployers are as separated from each other as from preview", async () => {
        const dev = deployer("dev");
        const prod = deployer("prod");
        const object = (n: string) => `arn:aws:s3:::${names(env(n), ACCOUNT_ID).raw_bucket}/raw/x.json`;
        await allowed(dev, { action: "s3:GetObject", resource: object("dev"), context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(dev, { action: "s3:GetObject", resource: object("prod"), context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(prod, { action: "s3:GetObject", resource: object("dev"), context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(dev, { action: "s3:GetObject", resource: stateObject(`prod/.pulumi/stacks/${PROJECT}/prod.json`) });
        await allowed(prod, { action: "s3:GetObject", resource: stateObject(`dev/.pulumi/stacks/${PROJECT}/dev.json`) });
        await denied(prod, { action: "s3:PutObject", resource: stateObject(`dev/.pulumi/stacks/${PROJECT}/dev.json`) });
        await allowed(dev, { action: "iam:CreateRole", resource: roleArn(extraNames(env("dev"), ACCOUNT_ID).transformerRole), context: { "iam:PermissionsBoundary": boundaryOf("dev") } });
        await explicitlyDenied(dev, { action: "iam:CreateRole", resource: roleArn(extraNames(env("dev"), ACCOUNT_ID).transformerRole), context: { "iam:PermissionsBoundary": boundaryOf("prod") } });
        await denied(dev, { action: "iam:CreateRole", resource: roleArn(extraNames(env("prod"), ACCOUNT_ID).transformerRole), context: { "iam:PermissionsBoundary": boundaryOf("prod") } });
    });

    it("without its guards, the deployer could mint a role without a boundary (so the tests above can fail)", async () => {
        // Drop the Deny statements and the boundary condition of the Allow: CreateRole without a
        // boundary is then allowed, which is exactly what the tests above rule out.
        const weakened = deployerPolicyDocuments(FACTS.preview).map((p) => ({
            ...p.document,
            Statement: p.document.Statement.filter((s) => s.Effect === "Allow").map((s) =>
                s.Sid === "ManageOwnRolesWithTheBoundary" ? { ...s, Condition: undefined } : s,
            ),
        }));
        const weak: Principal = { ...preview, identity: JSON.parse(JSON.stringify(weakened)) };
        await allowed(weak, { action: "iam:CreateRole", resource: ownRole });
        await explicitlyDenied(preview, { action: "iam:CreateRole", resource: ownRole });
    });

    it("its denies hold against any policy attached later", async () => {
        // A later policy that allows removing boundaries and creating roles without one changes nothing.
        const later: PolicyDocument = {
            Version: "2012-10-17",
            Statement: [{ Sid: "Later", Effect: "Allow", Action: ["iam:DeleteRolePermissionsBoundary", "iam:CreateRole", "iam:CreatePolicyVersion"], Resource: "*" }],
        };
        const withLater: Principal = { ...preview, identity: [...preview.identity, later] };
        await explicitlyDenied(withLater, { action: "iam:DeleteRolePermissionsBoundary", resource: ownRole, context: { "iam:PermissionsBoundary": boundaryOf(own) } });
        await explicitlyDenied(withLater, { action: "iam:CreateRole", resource: ownRole });
        await explicitlyDenied(withLater, { action: "iam:CreatePolicyVersion", resource: boundaryOf(own) });
        // ... and that the same later policy alone would have allowed all three.
        const alone: Principal = { ...preview, identity: [later] };
        await allowed(alone, { action: "iam:DeleteRolePermissionsBoundary", resource: ownRole, context: { "iam:PermissionsBoundary": boundaryOf(own) } });
        await allowed(alone, { action: "iam:CreateRole", resource: ownRole });
        await allowed(alone, { action: "iam:CreatePolicyVersion", resource: boundaryOf(own) });
    });
});

describe("bootstrap: the readers (the prod plan and the drift check)", () => {
    const provider = oidcProviderArn(PARTITION, ACCOUNT_ID);
    const reader = (envClass: DeployedClass): Principal => ({
        arn: roleArn(roleName(PROJECT, envClass, "reader")),
        accountId: ACCOUNT_ID,
        identity: readerPolicyDocuments(FACTS[envClass]).map((p) => p.document),
    });
    const job = (suffix: string) => ({ sub: `repo:${REPOSITORY}:${suffix}`, aud: "sts.amazonaws.com" });

    for (const envClass of READER_CLASSES) {
        it(`only jobs in the ${envClass}-read environment assume the ${envClass} reader`, async () => {
            const trust = trustPolicyDocument(FACTS[envClass], "reader");
            const assume = (suffix: string) => assumeWithWebIdentity(trust, roleArn(roleName(PROJECT, envClass, "reader")), provider, ACCOUNT_ID, job(suffix));
            assert.equal(await assume(`environment:${envClass}-read`), "Allowed");
            for (const other of [`environment:${envClass}`, "pull_request", "environment:dev-read-x", `environment:${envClass === "dev" ? "prod" : "dev"}-read`, "ref:refs/heads/main"]) {
                assert.notEqual(await assume(other), "Allowed", other);
            }
        });
    }

    it("writes no state but its own stacks' locks, and reads its own class's and dev's", async () => {
        const prod = reader("prod");
        await allowed(prod, { action: "s3:GetObject", resource: stateObject(`prod/.pulumi/stacks/${PROJECT}/prod.json`) });
        await allowed(prod, { action: "s3:GetObject", resource: stateObject(`dev/.pulumi/stacks/${PROJECT}/dev.json`) });
        await allowed(prod, { action: "s3:PutObject", resource: stateObject(`prod/.pulumi/locks/${PROJECT}/prod/lock.json`) });
        await allowed(prod, { action: "s3:DeleteObject", resource: stateObject(`prod/.pulumi/locks/${PROJECT}/prod/lock.json`) });
        await denied(prod, { action: "s3:PutObject", resource: stateObject(`prod/.pulumi/stacks/${PROJECT}/prod.json`) });
        await denied(prod, { action: "s3:DeleteObject", resource: stateObject(`prod/.pulumi/history/${PROJECT}/prod/x.json`) });
        await denied(prod, { action: "s3:PutObject", resource: stateObject(`dev/.pulumi/locks/${PROJECT}/dev/lock.json`) });
        await denied(prod, { action: "s3:GetObject", resource: stateObject(`preview/.pulumi/stacks/${PROJECT}/pr-1.json`) });
        const dev = reader("dev");
        await allowed(dev, { action: "s3:GetObject", resource: stateObject(`dev/.pulumi/stacks/${PROJECT}/dev.json`) });
        await denied(dev, { action: "s3:GetObject", resource: stateObject(`prod/.pulumi/stacks/${PROJECT}/prod.json`) });
    });

    it("decrypts its stacks' data keys but encrypts nothing, and reads none of the pipeline's data", async () => {
        const prod = reader("prod");
        const secretsKey = keyArn("6666ffff-2222-3333-4444-555566667777");
        await allowed(prod, { action: "kms:Decrypt", resource: secretsKey, context: { "kms:ResourceAliases": [secretsKeyAlias(PROJECT, "prod")] } }, PIPELINE_KEY_POLICY);
        await denied(prod, { action: "kms:Encrypt", resource: secretsKey, context: { "kms:ResourceAliases": [secretsKeyAlias(PROJECT, "prod")] } }, PIPELINE_KEY_POLICY);
        const prodNames = names(env("prod"), ACCOUNT_ID);
        await allowed(prod, { action: "s3:GetBucketPolicy", resource: `arn:aws:s3:::${prodNames.raw_bucket}`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(prod, { action: "s3:GetObject", resource: `arn:aws:s3:::${prodNames.raw_bucket}/raw/x.json`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(prod, { action: "dynamodb:GetItem", resource: `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${prodNames.metadata_table}` });
        await denied(prod, { action: "kms:Decrypt", resource: keyArn("7777aaaa-2222-3333-4444-555566667777"), context: keyTags("prod") }, PIPELINE_KEY_POLICY);
        await allowed(deployer("prod"), { action: "kms:Decrypt", resource: keyArn("7777aaaa-2222-3333-4444-555566667777"), context: keyTags("prod") }, PIPELINE_KEY_POLICY);
    });

    it("preview has no reader", () => {
        assert.throws(() => readerPolicyDocuments(FACTS.preview), /no reader/);
        assert.throws(() => trustPolicyDocument(FACTS.preview, "reader"), /no reader/);
    });
});

describe("bootstrap: what the deployment workflows do with a deployer besides Pulumi", () => {
    for (const [envClass, stack] of [["dev", "dev"], ["prod", "prod"], ["preview", "pr-42"]] as const) {
        it(`${envClass}: the smoke test's canaries and checks on ${stack}`, async () => {
            const n = names(env(stack), ACCOUNT_ID);
            const d = deployer(envClass);
            const s3 = { "s3:ResourceAccount": ACCOUNT_ID };
            await allowed(d, { action: "kinesis:PutRecords", resource: `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${n.stream}` });
            await allowed(d, { action: "s3:ListBucket", resource: `arn:aws:s3:::${n.processed_bucket}`, context: { ...s3, "s3:prefix": "processed/event_type=smoke_test/" } });
            await allowed(d, { action: "s3:GetObject", resource: `arn:aws:s3:::${n.processed_bucket}/processed/event_type=smoke_test/x.parquet`, context: s3 });
            await allowed(d, { action: "sqs:GetQueueAttributes", resource: `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${n.stream_dlq}` });
            await allowed(d, { action: "kms:GenerateDataKey", resource: keyArn("8888bbbb-2222-3333-4444-555566667777"), context: keyTags(stack) }, PIPELINE_KEY_POLICY);
            await allowed(d, { action: "secretsmanager:DescribeSecret", resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${n.hmac_secret}-AbCdEf` });
            // Only a preview stack's key is seeded by `xtask deploy`; dev's and prod's are seeded by hand.
            const seed = { action: "secretsmanager:PutSecretValue", resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${n.hmac_secret}-AbCdEf` };
            await (envClass === "preview" ? allowed(d, seed) : denied(d, seed));
        });
    }
});

describe("bootstrap: the permissions boundary", () => {
    // A role that a pull request creates with a policy that allows everything: the boundary is all
    // that stands between it and the account.
    const everything: PolicyDocument = { Version: "2012-10-17", Statement: [{ Sid: "Everything", Effect: "Allow", Action: "*", Resource: "*" }] };
    const bounded = (envClass: DeployedClass, roleName: string): Principal => ({
        arn: roleArn(roleName),
        accountId: ACCOUNT_ID,
        identity: [everything],
        boundary: boundaryPolicyDocument(FACTS[envClass]),
    });
    const own = "pr-42";
    const ownNames = names(env(own), ACCOUNT_ID);
    const prodNames = names(env("prod"), ACCOUNT_ID);
    const role = bounded("preview", `${ownNames.stream_processor}-role`);

    it("leaves a *:* role of pr-42 the pipeline's data-plane calls on pr-42's resources", async () => {
        await allowed(role, { action: "s3:PutObject", resource: `arn:aws:s3:::${ownNames.raw_bucket}/raw/x.json`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await allowed(role, { action: "kinesis:GetRecords", resource: `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${ownNames.stream}` });
        await allowed(role, { action: "dynamodb:UpdateItem", resource: `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${ownNames.metadata_table}` });
        await allowed(role, { action: "sqs:SendMessage", resource: `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${ownNames.transform_dlq}` });
        await allowed(role, { action: "secretsmanager:GetSecretValue", resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${ownNames.hmac_secret}-AbCdEf` });
        await allowed(role, { action: "kms:Decrypt", resource: keyArn("4444dddd-2222-3333-4444-555566667777"), context: keyTags(own) }, PIPELINE_KEY_POLICY);
        await allowed(role, { action: "logs:PutLogEvents", resource: `arn:aws:logs:${REGION}:${ACCOUNT_ID}:log-group:/aws/lambda/${ownNames.stream_processor}:log-stream:2026/01/01/x` });
        await allowed(role, { action: "xray:PutTraceSegments", resource: "*" });
    });

    it("denies the same role everything on prod's resources", async () => {
        await denied(role, { action: "s3:PutObject", resource: `arn:aws:s3:::${prodNames.raw_bucket}/raw/x.json`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(role, { action: "s3:GetObject", resource: `arn:aws:s3:::${prodNames.processed_bucket}/processed/x.parquet`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(role, { action: "kinesis:GetRecords", resource: `arn:aws:kinesis:${REGION}:${ACCOUNT_ID}:stream/${prodNames.stream}` });
        await denied(role, { action: "secretsmanager:GetSecretValue", resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT_ID}:secret:${prodNames.hmac_secret}-AbCdEf` });
        await denied(role, { action: "kms:Decrypt", resource: keyArn("5555eeee-2222-3333-4444-555566667777"), context: keyTags("prod") }, PIPELINE_KEY_POLICY);
        await denied(role, { action: "lambda:InvokeFunction", resource: `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${prodNames.transformer}` });
    });

    it("denies it IAM, Organizations and the control plane of its own resources", async () => {
        await explicitlyDenied(role, { action: "iam:CreateRole", resource: roleArn(`${ownNames.stream}-x`) });
        await explicitlyDenied(role, { action: "iam:AttachRolePolicy", resource: roleArn(`${ownNames.stream_processor}-role`) });
        await explicitlyDenied(role, { action: "iam:CreateAccessKey", resource: `arn:aws:iam::${ACCOUNT_ID}:user/admin` });
        await explicitlyDenied(role, { action: "organizations:LeaveOrganization", resource: "*" });
        await denied(role, { action: "s3:DeleteBucket", resource: `arn:aws:s3:::${ownNames.raw_bucket}`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await denied(role, { action: "lambda:UpdateFunctionCode", resource: `arn:aws:lambda:${REGION}:${ACCOUNT_ID}:function:${ownNames.transformer}` });
        await denied(role, { action: "ec2:RunInstances", resource: `arn:aws:ec2:${REGION}:${ACCOUNT_ID}:instance/*` });
    });

    it("without the boundary the same role could do all of it (so the tests above can fail)", async () => {
        const unbounded: Principal = { ...role, boundary: undefined };
        await allowed(unbounded, { action: "s3:PutObject", resource: `arn:aws:s3:::${prodNames.raw_bucket}/raw/x.json`, context: { "s3:ResourceAccount": ACCOUNT_ID } });
        await allowed(unbounded, { action: "iam:CreateRole", resource: roleArn(`${ownNames.stream}-x`) });
    });

    for (const envClass of DEPLOYED_CLASSES) {
        it(`${envClass}: keeps to ${envClass}'s names`, async () => {
            const name = envClass === "preview" ? own : envClass;
            const others = DEPLOYED_CLASSES.filter((c) => c !== envClass).map((c) => (c === "preview" ? "pr-7" : c));
            const r = bounded(envClass, `${names(env(name), ACCOUNT_ID).transformer}-role`);
            const table = (n: string) => `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${names(env(n), ACCOUNT_ID).metadata_table}`;
            await allowed(r, { action: "dynamodb:GetItem", resource: table(name) });
            for (const other of others) {
                await denied(r, { action: "dynamodb:GetItem", resource: table(other) });
            }
        });
    }
});

describe("bootstrap: the documents keep IAM's rules", () => {
    const documents = (): [string, PolicyDocument][] =>
        DEPLOYED_CLASSES.flatMap((c) => [
            [`${c} boundary`, boundaryPolicyDocument(FACTS[c])] as [string, PolicyDocument],
            ...deployerPolicyDocuments(FACTS[c]).map((p) => [`${c} ${p.part}`, p.document] as [string, PolicyDocument]),
        ]);

    it("every managed policy fits IAM's 6,144 characters, and a deployer has at most 10", () => {
        for (const [label, document] of documents()) {
            const size = JSON.stringify(document).length;
            assert.ok(size <= 6144, `${label}: ${size} characters`);
        }
        for (const c of DEPLOYED_CLASSES) {
            assert.ok(deployerPolicyDocuments(FACTS[c]).length <= 10, c);
        }
    });

    it("every statement has a unique, alphanumeric Sid", () => {
        for (const [label, document] of documents()) {
            const sids = document.Statement.map((s) => s.Sid);
            assert.deepEqual(sids.filter((s) => !/^[A-Za-z0-9]+$/.test(s)), [], label);
            assert.equal(new Set(sids).size, sids.length, `${label}: duplicate Sid`);
        }
    });

    it('an Allow on "*" names only actions that AWS authorises on "*" alone', async () => {
        const offenders: string[] = [];
        for (const [label, document] of documents()) {
            for (const s of document.Statement.filter((x) => x.Effect === "Allow" && x.Resource === "*")) {
                for (const action of [s.Action].flat()) {
                    const [service, name] = action.split(":") as [string, string];
                    if (!(await isWildcardOnlyAction(service, name))) {
                        offenders.push(`${label} ${s.Sid}: ${action}`);
                    }
                }
            }
        }
        assert.deepEqual(offenders, []);
    });

    it("every action of every Allow exists and takes the resources it is given (the simulator validates both)", async () => {
        // One simulation per statement and action on the statement's first resource, with its
        // wildcards filled in: an unknown action or a resource of the wrong type is an error.
        for (const [label, document] of documents()) {
            for (const s of document.Statement.filter((x) => x.Effect === "Allow")) {
                // A wildcard stands for a name, or for a name and a creation timestamp (stream consumers).
                const resources = [s.Resource ?? "*"].flat().flatMap((r) => (r === "*" ? [r] : [r.replace(/\*/g, "x"), r.replace(/\*/g, "x:1")]));
                for (const action of [s.Action].flat()) {
                    const errors: string[] = [];
                    for (const resource of resources) {
                        try {
                            await decide({ arn: roleArn("probe"), accountId: ACCOUNT_ID, identity: [document] }, { action, resource });
                            break;
                        } catch (e) {
                            errors.push((e as Error).message.split("\n")[0] as string);
                        }
                    }
                    assert.ok(errors.length < resources.length, `${label} ${s.Sid}: ${errors.join("; ")}`);
                }
            }
        }
    });
});
