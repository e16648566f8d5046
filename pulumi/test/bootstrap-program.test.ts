// The bootstrap program under Pulumi's mocks: what one account's stack creates, that every document
// it applies is the one policies.ts builds (and the simulator tests evaluate), and that the pipeline
// program names the boundaries this stack creates.

import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";

import { runUnderMocks, TEST_IDS, type Registered } from "../authz/mocks";
import { checkAll, deniesInsecureTransport, type ResourceLike } from "../policy/rules";
import { classBoundaryArn, DEPLOYED_CLASSES, permissionsBoundaryArn } from "../src/boundary";
import { allFacts } from "../bootstrap/facts";
import {
    backendUrl,
    boundaryPolicyDocument,
    READER_CLASSES,
    roleName,
    rolePolicyDocuments,
    rolePolicyName,
    secretsKeyAlias,
    secretsProviderUrl,
    stateBucketName,
    stateBucketPolicyDocument,
    stateKeyAlias,
    stateKeyPolicyDocument,
    trustPolicyDocument,
    type RoleKind,
} from "../bootstrap/policies";
import { BOOTSTRAP_ENVIRONMENT, BOOTSTRAP_PROJECT, createBootstrap, runBootstrap } from "../bootstrap/program";
import { ACCOUNT_ID } from "./harness";

const REPOSITORY = "example-org/eventpipe";
const FACTS = allFacts({ accountId: ACCOUNT_ID, partition: "aws", repository: REPOSITORY });
const { project: PROJECT, region: REGION } = FACTS.dev;
const STATE = { project: PROJECT, accountId: ACCOUNT_ID, region: REGION, partition: "aws" };

interface Run {
    resources: Registered[];
    outputs: Record<string, any>;
}

async function bootstrap(stack = ACCOUNT_ID, program?: () => Promise<unknown>): Promise<Run> {
    return runUnderMocks(BOOTSTRAP_PROJECT, stack, { accountId: ACCOUNT_ID, region: REGION, ids: TEST_IDS }, async () =>
        ((await (program ?? (() => createBootstrap({ repository: REPOSITORY, adoptOidcProvider: false })))()) as Record<string, unknown>),
    );
}

const parse = (v: unknown): any => (typeof v === "string" ? JSON.parse(v) : v);
const ofType = (run: Run, type: string) => run.resources.filter((r) => r.type === type);
function one(run: Run, type: string, predicate: (r: Registered) => boolean = () => true): Registered {
    const found = ofType(run, type).filter(predicate);
    assert.equal(found.length, 1, `one ${type}, found ${found.map((r) => r.name).join(", ")}`);
    return found[0] as Registered;
}

describe("bootstrap program under mocks", () => {
    let run: Run;
    before(async () => {
        run = await bootstrap();
    });

    it("trusts GitHub Actions' OIDC issuer for STS", () => {
        const provider = one(run, "aws:iam/openIdConnectProvider:OpenIdConnectProvider");
        assert.equal(provider.inputs.url, "https://token.actions.githubusercontent.com");
        assert.deepEqual(provider.inputs.clientIdLists, ["sts.amazonaws.com"]);
    });

    it("keeps the state in a versioned, private, TLS-only bucket encrypted with its own rotating key", () => {
        const bucketName = stateBucketName(PROJECT, ACCOUNT_ID);
        const bucket = one(run, "aws:s3/bucket:Bucket");
        assert.equal(bucket.inputs.bucket, bucketName);
        assert.equal(bucket.inputs.forceDestroy, false);
        const onBucket = (type: string) => one(run, type, (r) => r.inputs.bucket === bucketName);
        assert.equal(onBucket("aws:s3/bucketVersioning:BucketVersioning").inputs.versioningConfiguration.status, "Enabled");
        assert.equal(onBucket("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs.rule.objectOwnership, "BucketOwnerEnforced");
        const pab = onBucket("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs;
        assert.deepEqual([pab.blockPublicAcls, pab.blockPublicPolicy, pab.ignorePublicAcls, pab.restrictPublicBuckets], [true, true, true, true]);

        const stateKey = one(run, "aws:kms/key:Key", (r) => parse(r.inputs.policy).Statement.some((s: any) => s.Sid === "OnlyThroughS3"));
        assert.equal(stateKey.inputs.enableKeyRotation, true);
        assert.deepEqual(parse(stateKey.inputs.policy), stateKeyPolicyDocument(STATE));
        assert.equal(one(run, "aws:kms/alias:Alias", (r) => r.inputs.name === stateKeyAlias(PROJECT)).inputs.targetKeyId, stateKey.state.keyId);

        const [rule] = onBucket("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs.rules;
        assert.deepEqual(rule, { applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: stateKey.state.arn }, bucketKeyEnabled: true });

        const policy = parse(onBucket("aws:s3/bucketPolicy:BucketPolicy").inputs.policy);
        assert.deepEqual(policy, stateBucketPolicyDocument(STATE, stateKey.state.arn));
        assert.ok(deniesInsecureTransport(policy));
        const [lifecycle] = onBucket("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs.rules;
        assert.ok(lifecycle.noncurrentVersionExpiration.noncurrentDays >= 30, "earlier states stay restorable for a while");
    });

    it("gives each class its own rotating secrets provider key", () => {
        for (const c of DEPLOYED_CLASSES) {
            const alias = one(run, "aws:kms/alias:Alias", (r) => r.inputs.name === secretsKeyAlias(PROJECT, c));
            const secretsKey = one(run, "aws:kms/key:Key", (r) => r.state.keyId === alias.inputs.targetKeyId);
            assert.equal(secretsKey.inputs.enableKeyRotation, true);
        }
        assert.equal(ofType(run, "aws:kms/key:Key").length, 1 + DEPLOYED_CLASSES.length);
    });

    it("creates each class's boundary where the pipeline program looks for it", () => {
        for (const c of DEPLOYED_CLASSES) {
            const boundary = one(run, "aws:iam/policy:Policy", (r) => r.state.arn === classBoundaryArn(PROJECT, c, ACCOUNT_ID, "aws"));
            assert.deepEqual(parse(boundary.inputs.policy), boundaryPolicyDocument(FACTS[c]));
        }
        // The names the pipeline's roles carry, for a stack of each class.
        for (const [stack, c] of [["dev", "dev"], ["prod", "prod"], ["pr-42", "preview"]] as const) {
            assert.equal(permissionsBoundaryArn({ project: PROJECT, name: stack }, ACCOUNT_ID, "aws"), classBoundaryArn(PROJECT, c, ACCOUNT_ID, "aws"));
        }
    });

    it("creates a deployer per class and a reader for dev and prod, each with its trust and its policies", () => {
        const kinds: [string, RoleKind][] = [
            ...DEPLOYED_CLASSES.map((c) => [c, "deployer"] as [string, RoleKind]),
            ...READER_CLASSES.map((c) => [c, "reader"] as [string, RoleKind]),
        ];
        assert.equal(ofType(run, "aws:iam/role:Role").length, kinds.length);
        for (const [c, kind] of kinds) {
            const cls = c as (typeof DEPLOYED_CLASSES)[number];
            const role = one(run, "aws:iam/role:Role", (r) => r.inputs.name === roleName(PROJECT, cls, kind));
            assert.deepEqual(parse(role.inputs.assumeRolePolicy), trustPolicyDocument(FACTS[cls], kind));
            assert.equal(role.inputs.maxSessionDuration, 3600);
            assert.equal(role.inputs.permissionsBoundary, undefined, "the bootstrap roles are bounded by their own policies");
            const attached = ofType(run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").filter((a) => a.inputs.role === role.inputs.name);
            const parts = rolePolicyDocuments(FACTS[cls], kind);
            assert.equal(attached.length, parts.length);
            assert.ok(attached.length <= 10, "IAM attaches at most 10 managed policies to a role");
            for (const part of parts) {
                const policy = one(run, "aws:iam/policy:Policy", (r) => r.inputs.name === rolePolicyName(PROJECT, cls, kind, part.part));
                assert.deepEqual(parse(policy.inputs.policy), part.document);
                assert.ok(attached.some((a) => a.inputs.policyArn === policy.state.arn), `${policy.inputs.name} is attached`);
            }
        }
    });

    it("tags what it creates as the bootstrap stack's, which no class's deployer matches", () => {
        const provider = one(run, "pulumi:providers:aws");
        assert.deepEqual(parse(provider.inputs.defaultTags).tags, { project: PROJECT, environment: BOOTSTRAP_ENVIRONMENT });
        assert.equal(provider.inputs.region, REGION);
    });

    it("parents every resource to a component", () => {
        const orphans = run.resources.filter((r) => r.custom && !r.type.startsWith("pulumi:providers:") && !/eventpipe:bootstrap:\w+\$/.test(r.urn));
        assert.deepEqual(orphans.map((r) => r.urn), []);
    });

    it("exports the backends, secrets providers, boundaries and role ARNs of every class", async () => {
        // The CLI resolves outputs nested in the exported object; so does pulumi.output().
        const o = (await new Promise((resolve) => pulumi.output(run.outputs).apply(resolve))) as Record<string, any>;
        assert.equal(o.stateUrl, `s3://${stateBucketName(PROJECT, ACCOUNT_ID)}?region=${REGION}&awssdk=v2`);
        assert.equal(o.bootstrapBackendUrl, backendUrl(PROJECT, ACCOUNT_ID, REGION, "bootstrap"));
        assert.equal(o.secretsProviderTemplate, `awskms://alias/${PROJECT}-pulumi-{class}?region=${REGION}`);
        for (const c of DEPLOYED_CLASSES) {
            assert.equal(o.secretsProviderTemplate.replace("{class}", c), o.classes[c].secretsProvider);
        }
        for (const c of DEPLOYED_CLASSES) {
            assert.equal(o.classes[c].backendUrl, `s3://${stateBucketName(PROJECT, ACCOUNT_ID)}/${c}?region=${REGION}&awssdk=v2`);
            assert.equal(o.classes[c].secretsProvider, secretsProviderUrl(PROJECT, c, REGION));
            assert.equal(o.classes[c].deployerRoleArn, `arn:aws:iam::${ACCOUNT_ID}:role/${roleName(PROJECT, c)}`);
            assert.equal(o.classes[c].boundaryArn, classBoundaryArn(PROJECT, c, ACCOUNT_ID, "aws"));
            assert.equal(o.classes[c].readerRoleArn !== undefined, READER_CLASSES.includes(c));
        }
    });

    it("meets the policy pack, but for the documented exception of the bootstrap's own IAM documents", () => {
        const resources: ResourceLike[] = run.resources
            .filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"))
            .map((r) => ({ type: r.type, name: r.name, urn: r.urn, props: r.state }));
        assert.deepEqual(checkAll(resources), []);
    });

    it("the pack's exception is the bootstrap project's alone, and keeps explicit actions and no AWS managed policies", () => {
        const asPack = (urnProject: string) =>
            run.resources
                .filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"))
                .map((r) => ({ type: r.type, name: r.name, urn: r.urn.replace(`::${BOOTSTRAP_PROJECT}::`, `::${urnProject}::`), props: r.state }));
        const elsewhere = checkAll(asPack("eventpipe")).filter((v) => v.policy === "iam-no-wildcards");
        assert.ok(elsewhere.length > 50, "the same documents in the pipeline's project break the rule");
        const urn = `urn:pulumi:${ACCOUNT_ID}::${BOOTSTRAP_PROJECT}::aws:iam/policy:Policy::x`;
        const policy = (statement: object): ResourceLike => ({
            type: "aws:iam/policy:Policy",
            name: "x",
            urn,
            props: { policy: JSON.stringify({ Version: "2012-10-17", Statement: [statement] }) },
        });
        for (const bad of [
            { Effect: "Allow", Action: "*", Resource: "*" },
            { Effect: "Allow", Action: "s3:*", Resource: "arn:aws:s3:::eventpipe-dev-*" },
            { Effect: "Allow", NotAction: "iam:*", Resource: "*" },
            { Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::eventpipe-dev-*/*" },
        ]) {
            assert.ok(checkAll([policy(bad)]).length > 0, JSON.stringify(bad));
        }
        assert.deepEqual(checkAll([policy({ Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::eventpipe-dev-*/*" })]), []);
        const attachment = (policyArn: string): ResourceLike => ({
            type: "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            name: "x",
            urn: urn.replace("aws:iam/policy:Policy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"),
            props: { role: "x", policyArn },
        });
        assert.ok(checkAll([attachment("arn:aws:iam::aws:policy/AdministratorAccess")]).length > 0);
        assert.deepEqual(checkAll([attachment(`arn:aws:iam::${ACCOUNT_ID}:policy/eventpipe-github-dev-state`)]), []);
    });

    it("is the Pulumi project the policy pack exempts", () => {
        const yaml = fs.readFileSync(path.resolve(__dirname, "..", "bootstrap", "Pulumi.yaml"), "utf8");
        assert.equal(/^name:\s*(\S+)\s*$/m.exec(yaml)?.[1], BOOTSTRAP_PROJECT);
    });

    it("refuses credentials of another account than the stack's, and a repository that is not owner/name", async () => {
        await assert.rejects(bootstrap("210987654321"), /bootstrap stack of account 123456789012 is named `123456789012`, not `210987654321`/);
        await assert.rejects(
            bootstrap(ACCOUNT_ID, () => createBootstrap({ repository: "example-org/*", adoptOidcProvider: false })),
            /owner\/name/,
        );
    });

    it("reads the repository from the stack's configuration, and adopts an existing OIDC provider when told to", async () => {
        pulumi.runtime.setConfig(`${BOOTSTRAP_PROJECT}:repository`, "other-org/eventpipe");
        pulumi.runtime.setConfig(`${BOOTSTRAP_PROJECT}:adoptOidcProvider`, "true");
        try {
            const configured = await bootstrap(ACCOUNT_ID, () => runBootstrap());
            const role = configured.resources.find((r) => r.type === "aws:iam/role:Role" && r.inputs.name === roleName(PROJECT, "prod"));
            assert.deepEqual(parse(role?.inputs.assumeRolePolicy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"], [
                "repo:other-org/eventpipe:environment:prod",
            ]);
        } finally {
            pulumi.runtime.setConfig(`${BOOTSTRAP_PROJECT}:repository`, "");
            pulumi.runtime.setConfig(`${BOOTSTRAP_PROJECT}:adoptOidcProvider`, "");
        }
    });
});
