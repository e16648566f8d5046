// The bootstrap stack of one AWS account: the Pulumi state backend (bucket, keys) and the GitHub
// Actions roles that deploy the pipeline's stacks, with the permissions boundary of each class.
// Applied by an administrator, by hand, once per account (docs/bootstrap.md). Every document comes
// from policies.ts; this file only turns them into resources.

import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { DEPLOYED_CLASSES, permissionsBoundaryName, type DeployedClass } from "../src/boundary";
import { allFacts, projectAndRegion, type AccountFacts } from "./facts";
import {
    backendUrl,
    BOOTSTRAP_STATE_PREFIX,
    boundaryPolicyDocument,
    checkRepository,
    GITHUB_OIDC_AUDIENCE,
    GITHUB_OIDC_HOST,
    oidcProviderArn,
    ownershipTags,
    READER_CLASSES,
    roleName,
    rolePolicyDocuments,
    rolePolicyName,
    secretsKeyAlias,
    secretsKeyPolicyDocument,
    secretsProviderUrl,
    stateBucketName,
    stateBucketPolicyDocument,
    stateKeyAlias,
    stateKeyPolicyDocument,
    trustPolicyDocument,
    type BootstrapFacts,
    type RoleKind,
    type StateFacts,
} from "./policies";

/** The Pulumi project of the bootstrap stacks (Pulumi.yaml); the policy pack knows it by this name. */
export { BOOTSTRAP_PROJECT } from "../policy/rules";
/** The value of the `environment` tag on what the bootstrap stack creates: no class's. */
export const BOOTSTRAP_ENVIRONMENT = "bootstrap";
/** Noncurrent versions of state objects are kept this long: every earlier state can be restored. */
export const STATE_NONCURRENT_VERSION_DAYS = 90;

const json = (document: unknown) => JSON.stringify(document);

/** A customer managed key with rotation and an alias; kept if the stack is ever destroyed. */
function key(
    name: string,
    args: { description: string; alias: string; policy: string },
    opts: pulumi.CustomResourceOptions,
): { key: aws.kms.Key; alias: aws.kms.Alias } {
    const created = new aws.kms.Key(
        name,
        { description: args.description, enableKeyRotation: true, deletionWindowInDays: 30, policy: args.policy },
        { ...opts, protect: true, retainOnDelete: true },
    );
    const alias = new aws.kms.Alias(name, { name: args.alias, targetKeyId: created.keyId }, opts);
    return { key: created, alias };
}

/**
 * Where every stack of the account keeps its state: a versioned bucket encrypted with its own key
 * (SSE-KMS, S3 Bucket Key), TLS only, private (all four public access blocks, owner-enforced
 * objects), and one key per class for the stacks' secrets providers. The bucket and the keys are
 * protected and retained: losing them loses every stack's state.
 */
export class StateBackend extends pulumi.ComponentResource {
    readonly key: aws.kms.Key;
    readonly keyAlias: aws.kms.Alias;
    readonly bucket: aws.s3.Bucket;
    readonly policy: aws.s3.BucketPolicy;
    readonly secretsKeys: Record<DeployedClass, { key: aws.kms.Key; alias: aws.kms.Alias }>;

    constructor(name: string, args: { state: StateFacts }, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:bootstrap:StateBackend", name, {}, opts);
        const { state } = args;
        const child: pulumi.CustomResourceOptions = { parent: this };
        const kept: pulumi.CustomResourceOptions = { parent: this, protect: true, retainOnDelete: true };

        const stateKey = key(
            `${name}-key`,
            { description: `Pulumi state of ${state.project} (bucket ${stateBucketName(state.project, state.accountId)})`, alias: stateKeyAlias(state.project), policy: json(stateKeyPolicyDocument(state)) },
            child,
        );
        this.key = stateKey.key;
        this.keyAlias = stateKey.alias;

        this.bucket = new aws.s3.Bucket(name, { bucket: stateBucketName(state.project, state.accountId), forceDestroy: false }, kept);
        // The name (known during a preview) rather than the id, as in the pipeline's buckets.
        const bucketId = this.bucket.bucket;

        const ownership = new aws.s3.BucketOwnershipControls(name, { bucket: bucketId, rule: { objectOwnership: "BucketOwnerEnforced" } }, child);
        const publicAccessBlock = new aws.s3.BucketPublicAccessBlock(
            name,
            { bucket: bucketId, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
            child,
        );
        new aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            {
                bucket: bucketId,
                rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: this.key.arn }, bucketKeyEnabled: true }],
            },
            child,
        );
        const versioning = new aws.s3.BucketVersioning(name, { bucket: bucketId, versioningConfiguration: { status: "Enabled" } }, child);
        new aws.s3.BucketLifecycleConfiguration(
            name,
            {
                bucket: bucketId,
                rules: [
                    {
                        // Every write of a checkpoint leaves the previous one as a noncurrent version.
                        id: "expire-old-state-versions",
                        status: "Enabled",
                        filter: {},
                        noncurrentVersionExpiration: { noncurrentDays: STATE_NONCURRENT_VERSION_DAYS },
                        abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
                    },
                ],
            },
            { parent: this, dependsOn: [versioning] },
        );
        this.policy = new aws.s3.BucketPolicy(
            name,
            { bucket: bucketId, policy: this.key.arn.apply((arn) => json(stateBucketPolicyDocument(state, arn))) },
            { parent: this, dependsOn: [publicAccessBlock, ownership] },
        );

        this.secretsKeys = Object.fromEntries(
            DEPLOYED_CLASSES.map((c) => [
                c,
                key(
                    `${name}-secrets-${c}`,
                    { description: `Pulumi secrets provider of the ${c} stacks of ${state.project}`, alias: secretsKeyAlias(state.project, c), policy: json(secretsKeyPolicyDocument(state)) },
                    child,
                ),
            ]),
        ) as Record<DeployedClass, { key: aws.kms.Key; alias: aws.kms.Alias }>;

        this.registerOutputs({ bucket: this.bucket.bucket, keyArn: this.key.arn });
    }
}

/** A GitHub Actions role with its managed policies. */
export interface GithubRole {
    role: aws.iam.Role;
    policies: aws.iam.Policy[];
}

/**
 * GitHub Actions' OIDC provider, the permissions boundary of each class and the roles: a deployer
 * per class, a reader for dev and prod. Each role trusts only the jobs of `githubSubjects()`.
 */
export class GithubDeployers extends pulumi.ComponentResource {
    readonly oidcProvider: aws.iam.OpenIdConnectProvider;
    readonly boundaries: Record<DeployedClass, aws.iam.Policy>;
    readonly deployers: Record<DeployedClass, GithubRole>;
    readonly readers: Partial<Record<DeployedClass, GithubRole>>;

    constructor(
        name: string,
        args: { facts: Record<DeployedClass, BootstrapFacts>; adoptOidcProvider: boolean },
        opts?: pulumi.ComponentResourceOptions,
    ) {
        super("eventpipe:bootstrap:GithubDeployers", name, {}, opts);
        const { facts } = args;
        const any = facts.dev;
        const project = any.project;

        // One provider per account and issuer: an account that has one already adopts it
        // (`adoptOidcProvider`). Kept on destroy, since other repositories may use it.
        this.oidcProvider = new aws.iam.OpenIdConnectProvider(
            `${name}-github`,
            { url: `https://${GITHUB_OIDC_HOST}`, clientIdLists: [GITHUB_OIDC_AUDIENCE] },
            {
                parent: this,
                retainOnDelete: true,
                ...(args.adoptOidcProvider ? { import: oidcProviderArn(any.partition, any.accountId) } : {}),
            },
        );

        this.boundaries = Object.fromEntries(
            DEPLOYED_CLASSES.map((c) => [
                c,
                new aws.iam.Policy(
                    `${name}-boundary-${c}`,
                    {
                        name: permissionsBoundaryName(project, c),
                        description: `Permissions boundary of every role of the ${c} stacks of ${project}`,
                        policy: json(boundaryPolicyDocument(facts[c])),
                    },
                    { parent: this },
                ),
            ]),
        ) as Record<DeployedClass, aws.iam.Policy>;

        const githubRole = (c: DeployedClass, kind: RoleKind): GithubRole => {
            const f = facts[c];
            const logical = `${name}-${c}-${kind}`;
            const role = new aws.iam.Role(
                logical,
                {
                    name: roleName(project, c, kind),
                    description:
                        kind === "deployer"
                            ? `Deploys the ${c} stacks of ${project} from GitHub Actions (${f.repository})`
                            : `Reads the ${c} stacks of ${project} from GitHub Actions (${f.repository})`,
                    assumeRolePolicy: json(trustPolicyDocument(f, kind)),
                    // The longest job that assumes a role runs an hour.
                    maxSessionDuration: 3600,
                },
                // The trust names the provider by ARN; it must exist before a token is exchanged.
                { parent: this, dependsOn: [this.oidcProvider] },
            );
            const policies = rolePolicyDocuments(f, kind).map((p) => {
                const policy = new aws.iam.Policy(
                    `${logical}-${p.part}`,
                    { name: rolePolicyName(project, c, kind, p.part), description: p.description, policy: json(p.document) },
                    { parent: this },
                );
                new aws.iam.RolePolicyAttachment(`${logical}-${p.part}`, { role: role.name, policyArn: policy.arn }, { parent: this });
                return policy;
            });
            return { role, policies };
        };
        this.deployers = Object.fromEntries(DEPLOYED_CLASSES.map((c) => [c, githubRole(c, "deployer")])) as Record<DeployedClass, GithubRole>;
        this.readers = Object.fromEntries(READER_CLASSES.map((c) => [c, githubRole(c, "reader")]));

        this.registerOutputs({ oidcProviderArn: this.oidcProvider.arn });
    }
}

export interface BootstrapArgs {
    /** `owner/name` of the GitHub repository whose workflows deploy. */
    repository: string;
    /** Adopt the account's existing GitHub OIDC provider instead of creating one. */
    adoptOidcProvider: boolean;
}

/** What the workflows and an administrator need: names, ARNs and URLs, per class. */
export interface BootstrapOutputs {
    accountId: string;
    region: string;
    stateBucket: pulumi.Output<string>;
    /** `PULUMI_STATE_URL`: xtask adds `/<class>` per stack. */
    stateUrl: string;
    /** `PULUMI_SECRETS_PROVIDER`: xtask puts the stack's class in place of `{class}`. */
    secretsProviderTemplate: string;
    /** This stack's own backend, once its state has moved into the bucket. */
    bootstrapBackendUrl: string;
    stateKeyArn: pulumi.Output<string>;
    oidcProviderArn: pulumi.Output<string>;
    classes: Record<
        DeployedClass,
        {
            backendUrl: string;
            secretsProvider: string;
            boundaryArn: pulumi.Output<string>;
            deployerRoleArn: pulumi.Output<string>;
            readerRoleArn?: pulumi.Output<string>;
        }
    >;
}

/**
 * The bootstrap stack. Its stack is named after the account it manages, so that it is never applied
 * with another account's credentials.
 */
export async function createBootstrap(args: BootstrapArgs): Promise<BootstrapOutputs> {
    const repository = checkRepository(args.repository);
    const { project, region } = projectAndRegion();
    const provider = new aws.Provider("aws", {
        region: region as aws.Region,
        defaultTags: { tags: ownershipTags(project, BOOTSTRAP_ENVIRONMENT) },
    });
    const invokeOpts = { provider };
    const [identity, partition] = await Promise.all([aws.getCallerIdentity({}, invokeOpts), aws.getPartition({}, invokeOpts)]);
    const accountId = identity.accountId;
    const stack = pulumi.getStack();
    if (stack !== accountId) {
        throw new Error(`the bootstrap stack of account ${accountId} is named \`${accountId}\`, not \`${stack}\`: check the credentials, or \`pulumi stack init ${accountId}\``);
    }
    const account: AccountFacts = { accountId, partition: partition.partition, repository };
    const facts = allFacts(account);
    const opts: pulumi.ComponentResourceOptions = { providers: { aws: provider } };
    const state: StateFacts = { project, accountId, region, partition: partition.partition };

    const backend = new StateBackend("state", { state }, opts);
    const github = new GithubDeployers("github", { facts, adoptOidcProvider: args.adoptOidcProvider }, opts);

    const classes = Object.fromEntries(
        DEPLOYED_CLASSES.map((c) => [
            c,
            {
                backendUrl: backendUrl(project, accountId, region, c),
                secretsProvider: secretsProviderUrl(project, c, region),
                boundaryArn: github.boundaries[c].arn,
                deployerRoleArn: github.deployers[c].role.arn,
                ...(github.readers[c] ? { readerRoleArn: github.readers[c]?.role.arn } : {}),
            },
        ]),
    ) as BootstrapOutputs["classes"];

    return {
        accountId,
        region,
        stateBucket: backend.bucket.bucket,
        stateUrl: `s3://${stateBucketName(project, accountId)}?region=${region}&awssdk=v2`,
        secretsProviderTemplate: secretsProviderUrl(project, "{class}", region),
        bootstrapBackendUrl: backendUrl(project, accountId, region, BOOTSTRAP_STATE_PREFIX),
        stateKeyArn: backend.key.arn,
        oidcProviderArn: github.oidcProvider.arn,
        classes,
    };
}

/** The program: the stack's configuration (`repository`, `adoptOidcProvider`). */
export async function runBootstrap(): Promise<BootstrapOutputs> {
    const config = new pulumi.Config();
    return createBootstrap({ repository: config.require("repository"), adoptOidcProvider: config.getBoolean("adoptOidcProvider") ?? false });
}
