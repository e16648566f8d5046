// The policy documents of the bootstrap stack, as pure functions of a few facts about an environment
// class and the account: no Pulumi resources, no I/O. The bootstrap program (program.ts) turns them
// into resources; the tests (test/bootstrap*.test.ts) evaluate them with the IAM policy simulator.
//
// Who is who:
// - a *deployer role* (`eventpipe-github-<class>`) is what a GitHub Actions job of this repository
//   assumes through OIDC to run Pulumi for the stacks of one environment class (`dev`, `prod`, or
//   every `pr-<n>` preview stack);
// - the *permissions boundary* of the class (`eventpipe-<class>-boundary`) bounds every role the
//   pipeline program creates in that class; a deployer may create or change a role only if the role
//   carries its class's boundary, so a pull request cannot mint a role with more than the boundary;
// - the *state bucket* holds every stack's Pulumi state, one prefix per class.
//
// Names are scoped by the naming rule of src/names.ts (`<project>-<environment>-<thing>`), with the
// environment names of a class as a wildcard (src/boundary.ts): `eventpipe-dev-*`, `eventpipe-prod-*`,
// `eventpipe-pr-*`. Resources whose ARN AWS picks (KMS keys, EC2 resources) are scoped by the
// `project` and `environment` tags the program puts on everything (src/pipeline.ts `defaultTags`).

import type { Environment } from "../src/config";
import {
    classBoundaryArn,
    classNamePrefix,
    DEPLOYED_CLASSES,
    environmentNamePattern,
    permissionsBoundaryName,
    type DeployedClass,
} from "../src/boundary";
import { extraNames } from "../src/names";
import { defaultTags } from "../src/pipeline";

export type Condition = Record<string, Record<string, string | string[]>>;

export interface Statement {
    Sid: string;
    Effect: "Allow" | "Deny";
    Principal?: "*" | Record<string, string | string[]>;
    Action: string | string[];
    /** Absent only in a role's trust policy, where IAM forbids it. */
    Resource?: string | string[];
    Condition?: Condition;
}

export interface PolicyDocument {
    Version: "2012-10-17";
    Statement: Statement[];
}

const doc = (statements: Statement[]): PolicyDocument => ({ Version: "2012-10-17", Statement: statements });

/** What the documents of one environment class are built from. */
export interface BootstrapFacts {
    /** `project` of the environment files (`eventpipe`). */
    project: string;
    envClass: DeployedClass;
    accountId: string;
    /** `region` of the class's environment file. */
    region: string;
    /** `aws`, `aws-cn`, `aws-us-gov`. */
    partition: string;
    /** `owner/name` of the GitHub repository whose workflows deploy. */
    repository: string;
    /**
     * What the class's environment file turns on (`network.vpc`, `network.cloudtrail`): the deployer
     * gets the EC2 and CloudTrail permissions only for a class that has a VPC or a trail.
     */
    network: { vpc: boolean; cloudtrail: boolean };
}

// ---------------------------------------------------------------------------------------------
// Names that only the bootstrap stack creates
// ---------------------------------------------------------------------------------------------

/** GitHub Actions' OIDC issuer and the audience `aws-actions/configure-aws-credentials` asks for. */
export const GITHUB_OIDC_HOST = "token.actions.githubusercontent.com";
export const GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com";

export function oidcProviderArn(partition: string, accountId: string): string {
    return `arn:${partition}:iam::${accountId}:oidc-provider/${GITHUB_OIDC_HOST}`;
}

/**
 * The roles GitHub Actions jobs assume: a *deployer* per class, which runs Pulumi for the class's
 * stacks, and a *reader* for dev and prod, which previews and checks for drift without changing
 * anything but its stack's state lock.
 */
export type RoleKind = "deployer" | "reader";
export const READER_CLASSES: readonly DeployedClass[] = ["dev", "prod"];

/** `eventpipe-github-dev`, `eventpipe-github-dev-read`: outside every class's names, so no deployer can edit one. */
export function roleName(project: string, envClass: DeployedClass, kind: RoleKind = "deployer"): string {
    return kind === "deployer" ? `${project}-github-${envClass}` : `${project}-github-${envClass}-read`;
}
export const deployerRoleName = (project: string, envClass: DeployedClass): string => roleName(project, envClass, "deployer");

/** The managed policies of a role: `eventpipe-github-dev-state`, `eventpipe-github-dev-read-state`, ... */
export function rolePolicyName(project: string, envClass: DeployedClass, kind: RoleKind, part: string): string {
    return `${roleName(project, envClass, kind)}-${part}`;
}

export function stateBucketName(project: string, accountId: string): string {
    return `${project}-pulumi-state-${accountId}`;
}

/** The customer managed key of the state bucket (SSE-KMS). */
export function stateKeyAlias(project: string): string {
    return `alias/${project}-pulumi-state`;
}

/**
 * The key of a class's Pulumi secrets provider: each class encrypts its stacks' secrets with its own
 * key. With `{class}`, the template xtask fills in per stack (`PULUMI_SECRETS_PROVIDER`).
 */
export function secretsKeyAlias(project: string, envClass: DeployedClass | "{class}"): string {
    return `alias/${project}-pulumi-${envClass}`;
}

/**
 * The state layout: every stack of a class lives under `<class>/` in the state bucket
 * (`s3://<bucket>/dev/.pulumi/stacks/eventpipe/dev.json`, `.../preview/.pulumi/stacks/eventpipe/pr-42.json`),
 * the bootstrap stack under `bootstrap/`, which no deployer can read.
 */
export function statePrefix(envClass: DeployedClass): string {
    return envClass;
}
export const BOOTSTRAP_STATE_PREFIX = "bootstrap";

/** `PULUMI_BACKEND_URL` of a class (or of the bootstrap stack). */
export function backendUrl(project: string, accountId: string, region: string, prefix: string): string {
    return `s3://${stateBucketName(project, accountId)}/${prefix}?region=${region}&awssdk=v2`;
}

/** The secrets provider of a class's new stacks; with `{class}`, the `PULUMI_SECRETS_PROVIDER` of xtask. */
export function secretsProviderUrl(project: string, envClass: DeployedClass | "{class}", region: string): string {
    return `awskms://${secretsKeyAlias(project, envClass)}?region=${region}`;
}

/** The GitHub environment of the scheduled job that destroys preview stacks left behind. */
export const PREVIEW_CLEANUP_ENVIRONMENT = "preview-cleanup";

/** The GitHub environment whose jobs assume a reader role: `dev-read`, `prod-read`. */
export function readerEnvironment(envClass: DeployedClass): string {
    return `${envClass}-read`;
}

/**
 * The `sub` claims of the jobs that may assume a role. A job that names a GitHub environment gets
 * `repo:<owner>/<name>:environment:<environment>`; a pull-request job without one gets
 * `repo:<owner>/<name>:pull_request`; GitHub issues no token to pull requests from forks.
 * - dev deployer: the `dev` job of deploy.yml (GitHub environment `dev`, deployment branch `main`);
 * - prod deployer: the `prod` job (GitHub environment `prod`, required reviewers);
 * - preview deployer: pull-request jobs (preview.yml, without a GitHub environment), and the
 *   scheduled clean-up job in the `preview-cleanup` environment (deployment branch `main`), the only
 *   way a job that is not a pull request's reaches preview stacks;
 * - dev and prod readers: jobs in `dev-read` and `prod-read` (the prod plan, the drift check).
 */
export function githubSubjects(envClass: DeployedClass, repository: string, kind: RoleKind = "deployer"): string[] {
    const repo = `repo:${repository}`;
    if (kind === "reader") {
        if (!READER_CLASSES.includes(envClass)) {
            throw new Error(`\`${envClass}\` has no reader role`);
        }
        return [`${repo}:environment:${readerEnvironment(envClass)}`];
    }
    switch (envClass) {
        case "dev":
        case "prod":
            return [`${repo}:environment:${envClass}`];
        case "preview":
            return [`${repo}:pull_request`, `${repo}:environment:${PREVIEW_CLEANUP_ENVIRONMENT}`];
    }
}

const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/** Checks `owner/name`: no wildcard may widen the trust. */
export function checkRepository(repository: string): string {
    if (!REPOSITORY.test(repository)) {
        throw new Error(`the repository must be \`owner/name\` (letters, digits, \`-\`, \`_\`, \`.\`), not \`${repository}\``);
    }
    return repository;
}

// ---------------------------------------------------------------------------------------------
// Scopes
// ---------------------------------------------------------------------------------------------

/**
 * The tags that say which project and environment a resource belongs to: the program tags every
 * resource with `defaultTags()` (src/pipeline.ts), of which these are the ones whose value is the
 * project or the environment (not a commit or the environment file's own tags).
 */
export function ownershipTags(project: string, environment: string): Record<string, string> {
    // defaultTags once took the deploying commit as a second argument; any extra argument is ignored.
    const tagsOf = defaultTags as (env: Environment, gitSha?: string) => Record<string, string>;
    const all = tagsOf({ project, name: environment, tags: {} } as unknown as Environment, "");
    return Object.fromEntries(Object.entries(all).filter(([, v]) => v === project || v === environment));
}

/** Every name of a class, in the forms the program uses. */
interface Scope {
    arn: (service: string, resource: string, opts?: { region?: boolean; account?: boolean }) => string;
    /** `eventpipe-dev` or `eventpipe-pr-*`. */
    stem: string;
    /** Names `<stem>-<thing>` (`eventpipe-dev-*`). */
    things: string;
    /** The stem itself and its things (`eventpipe-dev`, `eventpipe-dev-*`): aliases, dashboards. */
    selfAndThings: string[];
    /** The class's Glue database (`eventpipe_dev`, `eventpipe_pr_*`). */
    glueDatabase: string;
    /** The values of the program's ownership tags on a resource of the class. */
    tags: Record<string, string>;
    boundaryArn: string;
}

function scope(f: BootstrapFacts): Scope {
    const envPattern = environmentNamePattern(f.envClass);
    const stem = classNamePrefix(f.project, f.envClass);
    const wild = stem.endsWith("*");
    const pattern = { project: f.project, name: envPattern };
    const tags = ownershipTags(f.project, envPattern);
    return {
        arn: (service, resource, opts = {}) =>
            `arn:${f.partition}:${service}:${opts.region === false ? "" : f.region}:${opts.account === false ? "" : f.accountId}:${resource}`,
        stem,
        things: wild ? stem : `${stem}-*`,
        selfAndThings: wild ? [stem] : [stem, `${stem}-*`],
        glueDatabase: extraNames(pattern, f.accountId).glueDatabase,
        tags,
        boundaryArn: classBoundaryArn(f.project, f.envClass, f.accountId, f.partition),
    };
}

/** `StringLike` on the ownership tags of the request's resource (`Resource`) or of the request (`Request`). */
function taggedAsClass(s: Scope, kind: "Resource" | "Request"): Condition {
    return { StringLike: Object.fromEntries(Object.entries(s.tags).map(([k, v]) => [`aws:${kind}Tag/${k}`, v])) };
}

const s3Arn = (f: BootstrapFacts, resource: string) => `arn:${f.partition}:s3:::${resource}`;
const iamArn = (f: BootstrapFacts, resource: string) => `arn:${f.partition}:iam::${f.accountId}:${resource}`;
const servicePrincipal = (service: string) => `${service}.amazonaws.com`;


// ---------------------------------------------------------------------------------------------
// The trust of a deployer role
// ---------------------------------------------------------------------------------------------

/**
 * Only GitHub Actions jobs of the repository, with the subjects of `githubSubjects()`, and only
 * tokens minted for STS (`aud`), as AWS documents for GitHub's OIDC provider:
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-idp_oidc.html#idp_oidc_Create_GitHub
 * The subjects are exact, so `StringEquals` (AWS's `StringLike` example only matters with wildcards).
 */
export function trustPolicyDocument(f: BootstrapFacts, kind: RoleKind = "deployer"): PolicyDocument {
    return doc([
        {
            Sid: "GitHubActionsJobsOfThisRepository",
            Effect: "Allow",
            Principal: { Federated: oidcProviderArn(f.partition, f.accountId) },
            Action: "sts:AssumeRoleWithWebIdentity",
            Condition: {
                StringEquals: {
                    [`${GITHUB_OIDC_HOST}:aud`]: GITHUB_OIDC_AUDIENCE,
                    [`${GITHUB_OIDC_HOST}:sub`]: githubSubjects(f.envClass, checkRepository(f.repository), kind),
                },
            },
        },
    ]);
}


// ---------------------------------------------------------------------------------------------
// The permissions boundary of a class
// ---------------------------------------------------------------------------------------------

/**
 * The most any role of the class may do, whatever its own policies say: the data-plane calls of the
 * functions and of the tool roles, on the class's own resources only, and never IAM or
 * Organizations. A role's effective permissions are its policies intersected with this.
 */
export function boundaryPolicyDocument(f: BootstrapFacts): PolicyDocument {
    const s = scope(f);
    const arn = s.arn;
    return doc([
        {
            Sid: "UseOwnStreams",
            Effect: "Allow",
            Action: [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:DescribeStreamConsumer",
                "kinesis:ListShards",
                "kinesis:ListStreamConsumers",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
                "kinesis:SubscribeToShard",
                "kinesis:PutRecord",
                "kinesis:PutRecords",
            ],
            // Enhanced fan-out consumers are `stream/<name>/consumer/<consumer>:<timestamp>`.
            Resource: [arn("kinesis", `stream/${s.things}`), arn("kinesis", `stream/${s.things}/consumer/*`)],
        },
        {
            Sid: "UseOwnObjects",
            Effect: "Allow",
            Action: [
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            Resource: s3Arn(f, `${s.things}/*`),
            Condition: { StringEquals: { "s3:ResourceAccount": f.accountId } },
        },
        {
            Sid: "ListOwnBuckets",
            Effect: "Allow",
            Action: ["s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"],
            Resource: s3Arn(f, s.things),
            Condition: { StringEquals: { "s3:ResourceAccount": f.accountId } },
        },
        {
            Sid: "UseOwnTables",
            Effect: "Allow",
            Action: [
                "dynamodb:DescribeTable",
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:ConditionCheckItem",
            ],
            // Indexes are `table/<name>/index/<index>`: the same prefix.
            Resource: arn("dynamodb", `table/${s.things}`),
        },
        {
            Sid: "UseOwnQueues",
            Effect: "Allow",
            Action: [
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:StartMessageMoveTask",
                "sqs:ListMessageMoveTasks",
                "sqs:CancelMessageMoveTask",
            ],
            Resource: arn("sqs", s.things),
        },
        {
            Sid: "PublishToOwnTopics",
            Effect: "Allow",
            Action: "sns:Publish",
            Resource: arn("sns", s.things),
        },
        {
            Sid: "ReadOwnSecrets",
            Effect: "Allow",
            Action: ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            // Secret names are `<stem>/<thing>`; the ARN appends six random characters.
            Resource: arn("secretsmanager", `secret:${s.stem}/*`),
        },
        {
            Sid: "UseOwnKeys",
            Effect: "Allow",
            Action: ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
            // Key ids are picked by KMS: the key is the class's by its ownership tags.
            Resource: arn("kms", "key/*"),
            Condition: taggedAsClass(s, "Resource"),
        },
        {
            Sid: "WriteOwnFunctionLogs",
            Effect: "Allow",
            Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
            Resource: arn("logs", `log-group:/aws/lambda/${s.things}:log-stream:*`),
        },
        {
            Sid: "InvokeOwnFunctions",
            Effect: "Allow",
            Action: "lambda:InvokeFunction",
            Resource: arn("lambda", `function:${s.things}`),
        },
        {
            Sid: "WriteTraces",
            Effect: "Allow",
            Action: ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"],
            // X-Ray authorises these only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsx-ray.html
            Resource: "*",
        },
        {
            Sid: "ManageFunctionNetworkInterfaces",
            Effect: "Allow",
            Action: [
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            // Lambda creates the interfaces of VPC functions with their role, in the function's
            // subnets and security group, whose ids EC2 picks.
            Resource: [arn("ec2", "network-interface/*"), arn("ec2", "subnet/*"), arn("ec2", "security-group/*")],
        },
        {
            Sid: "DescribeFunctionNetwork",
            Effect: "Allow",
            Action: ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs"],
            // EC2 Describe* actions authorise only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
            Resource: "*",
        },
        {
            Sid: "NeverIamOrOrganizations",
            Effect: "Deny",
            Action: ["iam:*", "organizations:*", "account:*"],
            Resource: "*",
        },
    ]);
}

// ---------------------------------------------------------------------------------------------
// The permissions of a deployer role
// ---------------------------------------------------------------------------------------------

/** A managed policy of a deployer role. IAM limits one to 6,144 characters, so they come in parts. */
export interface DeployerPolicy {
    part: string;
    description: string;
    document: PolicyDocument;
}

/** The classes whose state a class reads: promotion and the pull-request preview read dev's outputs and tags. */
export function readsStateOf(envClass: DeployedClass): DeployedClass[] {
    return envClass === "dev" ? [] : ["dev"];
}

function statePolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const bucket = s3Arn(f, stateBucketName(f.project, f.accountId));
    const own = statePrefix(f.envClass);
    const read = readsStateOf(f.envClass).map(statePrefix);
    const statements: Statement[] = [
        {
            // The Pulumi S3 backend keeps each stack's checkpoint, history, backups, locks and tags
            // under `<prefix>/.pulumi/`, and deletes a lock when it is done.
            Sid: "ReadWriteOwnState",
            Effect: "Allow",
            Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            Resource: `${bucket}/${own}/*`,
        },
        {
            Sid: "ListOwnState",
            Effect: "Allow",
            Action: "s3:ListBucket",
            Resource: bucket,
            Condition: { StringLike: { "s3:prefix": [own, `${own}/*`, ...read.flatMap((p) => [p, `${p}/*`])] } },
        },
        {
            Sid: "LocateStateBucket",
            Effect: "Allow",
            Action: "s3:GetBucketLocation",
            Resource: bucket,
        },
        {
            // S3 encrypts and decrypts the state objects with the state key on the caller's behalf.
            Sid: "UseStateKeyThroughS3",
            Effect: "Allow",
            Action: ["kms:Decrypt", "kms:GenerateDataKey"],
            Resource: s.arn("kms", "key/*"),
            Condition: {
                StringEquals: { "kms:ViaService": `s3.${f.region}.amazonaws.com` },
                "ForAnyValue:StringEquals": { "kms:ResourceAliases": stateKeyAlias(f.project) },
            },
        },
        {
            // The secrets provider of the class's stacks (`awskms://alias/...`) wraps each stack's data key.
            Sid: "UseOwnSecretsKey",
            Effect: "Allow",
            Action: ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
            Resource: s.arn("kms", "key/*"),
            Condition: { "ForAnyValue:StringEquals": { "kms:ResourceAliases": secretsKeyAlias(f.project, f.envClass) } },
        },
    ];
    for (const other of readsStateOf(f.envClass)) {
        statements.push(
            {
                Sid: `Read${capitalise(other)}State`,
                Effect: "Allow",
                Action: "s3:GetObject",
                Resource: `${bucket}/${statePrefix(other)}/*`,
            },
            {
                // Loading a stack unwraps its data key, even to read outputs or to preview.
                Sid: `Decrypt${capitalise(other)}StackKey`,
                Effect: "Allow",
                Action: ["kms:Decrypt", "kms:DescribeKey"],
                Resource: s.arn("kms", "key/*"),
                Condition: { "ForAnyValue:StringEquals": { "kms:ResourceAliases": secretsKeyAlias(f.project, other) } },
            },
        );
    }
    return statements;
}

const capitalise = (w: string) => w.charAt(0).toUpperCase() + w.slice(1);

function iamPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const roles = iamArn(f, `role/${s.things}`);
    const boundary = { "iam:PermissionsBoundary": s.boundaryArn };
    return [
        {
            Sid: "ReadOwnRoles",
            Effect: "Allow",
            Action: ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole", "iam:ListRoleTags"],
            Resource: roles,
        },
        {
            // `iam:PermissionsBoundary` is the boundary the request sets (CreateRole) or the one the
            // role carries (every other action): a role without the class's boundary is out of reach.
            Sid: "ManageOwnRolesWithTheBoundary",
            Effect: "Allow",
            Action: [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:PutRolePermissionsBoundary",
            ],
            Resource: roles,
            Condition: { StringEquals: boundary },
        },
        {
            Sid: "TagOwnRoles",
            Effect: "Allow",
            Action: ["iam:TagRole", "iam:UntagRole"],
            Resource: roles,
        },
        {
            // Only to Lambda: the functions' execution roles. The tool roles are assumed, not passed.
            Sid: "PassOwnRolesToLambda",
            Effect: "Allow",
            Action: "iam:PassRole",
            Resource: roles,
            Condition: { StringEquals: { "iam:PassedToService": servicePrincipal("lambda") } },
        },
        // The guards: explicit denies, so that no other policy attached later can lift them.
        {
            Sid: "NoRoleWithoutTheBoundary",
            Effect: "Deny",
            Action: [
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:AttachRolePolicy",
                "iam:PutRolePermissionsBoundary",
                "iam:UpdateAssumeRolePolicy",
            ],
            Resource: "*",
            Condition: { StringNotEquals: boundary },
        },
        {
            Sid: "NeverRemoveABoundary",
            Effect: "Deny",
            Action: "iam:DeleteRolePermissionsBoundary",
            Resource: "*",
        },
        {
            Sid: "NeverEditBoundariesOrDeployers",
            Effect: "Deny",
            Action: [
                "iam:CreatePolicy",
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:SetDefaultPolicyVersion",
                "iam:TagPolicy",
                "iam:UntagPolicy",
            ],
            Resource: [
                ...DEPLOYED_CLASSES.map((c) => iamArn(f, `policy/${permissionsBoundaryName(f.project, c)}`)),
                iamArn(f, `policy/${f.project}-github-*`),
            ],
        },
        {
            Sid: "NeverTouchDeployerRoles",
            Effect: "Deny",
            Action: "iam:*",
            Resource: iamArn(f, `role/${f.project}-github-*`),
        },
    ];
}

function functionsPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const arn = s.arn;
    const functions = arn("lambda", `function:${s.things}`);
    const mappings = arn("lambda", "event-source-mapping:*");
    const ofOwnFunction = { ArnLike: { "lambda:FunctionArn": functions } };
    const statements: Statement[] = [
        {
            Sid: "ManageOwnFunctions",
            Effect: "Allow",
            Action: [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:ListVersionsByFunction",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetFunctionConcurrency",
                "lambda:PutFunctionConcurrency",
                "lambda:DeleteFunctionConcurrency",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:ListTags",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:GetPolicy",
                "lambda:PutFunctionEventInvokeConfig",
                "lambda:GetFunctionEventInvokeConfig",
                "lambda:UpdateFunctionEventInvokeConfig",
                "lambda:DeleteFunctionEventInvokeConfig",
            ],
            Resource: functions,
        },
        {
            // A mapping's id is picked by Lambda; `lambda:FunctionArn` names the function it invokes.
            // CreateEventSourceMapping authorises only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html
            Sid: "CreateMappingsOfOwnFunctions",
            Effect: "Allow",
            Action: "lambda:CreateEventSourceMapping",
            Resource: "*",
            Condition: ofOwnFunction,
        },
        {
            Sid: "ManageMappingsOfOwnFunctions",
            Effect: "Allow",
            Action: ["lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping", "lambda:DeleteEventSourceMapping"],
            Resource: mappings,
            Condition: ofOwnFunction,
        },
        {
            // Tagging actions carry no `lambda:FunctionArn`: a mapping is the class's by its tags,
            // which it gets when it is created.
            Sid: "TagMappingsAsOwn",
            Effect: "Allow",
            Action: "lambda:TagResource",
            Resource: mappings,
            Condition: taggedAsClass(s, "Request"),
        },
        {
            Sid: "ReadAndUntagOwnMappings",
            Effect: "Allow",
            Action: ["lambda:UntagResource", "lambda:ListTags"],
            Resource: mappings,
            Condition: taggedAsClass(s, "Resource"),
        },
        {
            // A mapping that carries another class's `environment` tag is never retagged.
            Sid: "DenyRetaggingOtherMappings",
            Effect: "Deny",
            Action: ["lambda:TagResource", "lambda:UntagResource"],
            Resource: mappings,
            Condition: {
                Null: { "aws:ResourceTag/environment": "false" },
                StringNotLike: { "aws:ResourceTag/environment": s.tags.environment ?? "" },
            },
        },
        {
            Sid: "ManageOwnLogGroups",
            Effect: "Allow",
            Action: [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:AssociateKmsKey",
                "logs:DisassociateKmsKey",
                "logs:TagResource",
                "logs:UntagResource",
                "logs:ListTagsForResource",
                "logs:TagLogGroup",
                "logs:UntagLogGroup",
                "logs:ListTagsLogGroup",
            ],
            Resource: arn("logs", `log-group:/aws/lambda/${s.things}`),
        },
        {
            Sid: "DescribeLogGroups",
            Effect: "Allow",
            Action: "logs:DescribeLogGroups",
            // DescribeLogGroups authorises only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html
            Resource: "*",
        },
        {
            Sid: "ManageOwnAlarms",
            Effect: "Allow",
            Action: [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
                "cloudwatch:ListTagsForResource",
            ],
            Resource: arn("cloudwatch", `alarm:${s.things}`),
        },
        {
            // The rules that run scheduled functions (on the default event bus).
            Sid: "ManageOwnSchedules",
            Effect: "Allow",
            Action: [
                "events:PutRule",
                "events:DescribeRule",
                "events:DeleteRule",
                "events:ListTargetsByRule",
                "events:RemoveTargets",
                "events:TagResource",
                "events:UntagResource",
                "events:ListTagsForResource",
            ],
            Resource: arn("events", `rule/${s.things}`),
        },
        {
            // A rule of the class targets the class's functions only (`events:TargetArn` lists
            // every target of the request).
            Sid: "TargetOwnFunctions",
            Effect: "Allow",
            Action: "events:PutTargets",
            Resource: arn("events", `rule/${s.things}`),
            Condition: { "ForAllValues:ArnLike": { "events:TargetArn": functions }, Null: { "events:TargetArn": "false" } },
        },
        {
            Sid: "ManageOwnDashboard",
            Effect: "Allow",
            Action: ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
            // Dashboards are global: no region in their ARN.
            Resource: s.selfAndThings.map((n) => arn("cloudwatch", `dashboard/${n}`, { region: false })),
        },
    ];
    if (f.network.vpc) {
        statements.push({
            // Lambda checks that whoever configures a function's VPC may describe it.
            Sid: "DescribeFunctionNetwork",
            Effect: "Allow",
            Action: ["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces"],
            // EC2 Describe* actions authorise only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
            Resource: "*",
        });
    }
    return statements;
}

function messagingPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const arn = s.arn;
    const statements: Statement[] = [
        {
            Sid: "ManageOwnStreams",
            Effect: "Allow",
            Action: [
                "kinesis:CreateStream",
                "kinesis:DeleteStream",
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:ListTagsForStream",
                "kinesis:AddTagsToStream",
                "kinesis:RemoveTagsFromStream",
                "kinesis:ListTagsForResource",
                "kinesis:TagResource",
                "kinesis:UntagResource",
                "kinesis:IncreaseStreamRetentionPeriod",
                "kinesis:DecreaseStreamRetentionPeriod",
                "kinesis:StartStreamEncryption",
                "kinesis:StopStreamEncryption",
                // The smoke test sends its canaries.
                "kinesis:PutRecord",
                "kinesis:PutRecords",
            ],
            Resource: arn("kinesis", `stream/${s.things}`),
        },
        {
            Sid: "ManageOwnQueues",
            Effect: "Allow",
            Action: [
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ListQueueTags",
                "sqs:TagQueue",
                "sqs:UntagQueue",
            ],
            Resource: arn("sqs", s.things),
        },
        {
            Sid: "ManageOwnTopics",
            Effect: "Allow",
            Action: [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:ListTagsForResource",
                "sns:TagResource",
                "sns:UntagResource",
                "sns:Subscribe",
                "sns:Unsubscribe",
                "sns:GetSubscriptionAttributes",
                "sns:SetSubscriptionAttributes",
            ],
            // Subscriptions are `<topic ARN>:<id>`: the same prefix.
            Resource: arn("sns", s.things),
        },
    ];
    if (f.envClass !== "preview") {
        statements.push({
            // Changing a stream's shard count or mode when its environment file does. Not for
            // preview stacks (on-demand, created with their mode): neither can be scoped to a stream.
            Sid: "ChangeStreamCapacity",
            Effect: "Allow",
            Action: ["kinesis:UpdateShardCount", "kinesis:UpdateStreamMode"],
            // Both authorise only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonkinesis.html
            Resource: "*",
        });
    }
    return statements;
}

function dataPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const arn = s.arn;
    const inThisAccount = { StringEquals: { "s3:ResourceAccount": f.accountId } };
    const secrets = arn("secretsmanager", `secret:${s.stem}/*`);
    const statements: Statement[] = [
        {
            Sid: "ManageOwnBuckets",
            Effect: "Allow",
            Action: [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketLocation",
                "s3:GetBucketPolicy",
                "s3:PutBucketPolicy",
                "s3:DeleteBucketPolicy",
                "s3:GetBucketAcl",
                "s3:GetBucketCORS",
                "s3:GetBucketWebsite",
                "s3:GetBucketVersioning",
                "s3:PutBucketVersioning",
                "s3:GetAccelerateConfiguration",
                "s3:GetBucketRequestPayment",
                "s3:GetBucketLogging",
                "s3:PutBucketLogging",
                "s3:GetLifecycleConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:GetReplicationConfiguration",
                "s3:GetEncryptionConfiguration",
                "s3:PutEncryptionConfiguration",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetBucketTagging",
                "s3:PutBucketTagging",
                "s3:GetBucketOwnershipControls",
                "s3:PutBucketOwnershipControls",
                "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock",
                "s3:GetBucketNotification",
                "s3:PutBucketNotification",
            ],
            Resource: s3Arn(f, s.things),
            Condition: inThisAccount,
        },
        {
            // Emptying a bucket on destroy (preview stacks) and the smoke test's reads.
            Sid: "ReadAndEmptyOwnBuckets",
            Effect: "Allow",
            Action: ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"],
            Resource: s3Arn(f, `${s.things}/*`),
            Condition: inThisAccount,
        },
        {
            Sid: "ManageOwnTables",
            Effect: "Allow",
            Action: [
                "dynamodb:CreateTable",
                "dynamodb:DeleteTable",
                "dynamodb:DescribeTable",
                "dynamodb:UpdateTable",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:UpdateTimeToLive",
                "dynamodb:ListTagsOfResource",
                "dynamodb:TagResource",
                "dynamodb:UntagResource",
                "dynamodb:GetItem",
                "dynamodb:Query",
            ],
            Resource: arn("dynamodb", `table/${s.things}`),
        },
        {
            // Never GetSecretValue: the deployer creates the secret, not its value.
            Sid: "ManageOwnSecrets",
            Effect: "Allow",
            Action: [
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:UpdateSecret",
                "secretsmanager:GetResourcePolicy",
                "secretsmanager:PutResourcePolicy",
                "secretsmanager:DeleteResourcePolicy",
                "secretsmanager:TagResource",
                "secretsmanager:UntagResource",
            ],
            Resource: secrets,
        },
        {
            Sid: "ManageOwnCatalog",
            Effect: "Allow",
            Action: [
                "glue:CreateDatabase",
                "glue:GetDatabase",
                "glue:UpdateDatabase",
                "glue:DeleteDatabase",
                "glue:CreateTable",
                "glue:GetTable",
                "glue:GetTables",
                "glue:UpdateTable",
                "glue:DeleteTable",
                "glue:GetPartitionIndexes",
                "glue:GetTags",
                "glue:TagResource",
                "glue:UntagResource",
            ],
            // Glue authorises on the account's catalog and on the database, its tables and functions.
            Resource: [
                arn("glue", "catalog"),
                arn("glue", `database/${s.glueDatabase}`),
                arn("glue", `table/${s.glueDatabase}/*`),
                arn("glue", `userDefinedFunction/${s.glueDatabase}/*`),
            ],
        },
    ];
    if (f.envClass === "preview") {
        statements.push({
            // `xtask deploy` seeds a random PII key into a new preview stack (synthetic data only).
            Sid: "SeedPreviewHmacKeys",
            Effect: "Allow",
            Action: "secretsmanager:PutSecretValue",
            Resource: secrets,
        });
    }
    return statements;
}

function keysPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const arn = s.arn;
    const keys = arn("kms", "key/*");
    const aliases = s.selfAndThings.map((n) => arn("kms", `alias/${n}`));
    return [
        {
            // A key is the class's by the tags it is created with (`defaultTags`).
            // CreateKey authorises only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html
            Sid: "CreateKeysTaggedAsOwn",
            Effect: "Allow",
            Action: "kms:CreateKey",
            Resource: "*",
            Condition: taggedAsClass(s, "Request"),
        },
        {
            // Tagging at creation needs kms:TagResource on every key of the account and region
            // (https://docs.aws.amazon.com/kms/latest/developerguide/manage-tags-api.html); the
            // tags must be the class's, and DenyRetaggingOtherKeys keeps other keys' tags.
            Sid: "TagKeysAsOwn",
            Effect: "Allow",
            Action: "kms:TagResource",
            Resource: keys,
            Condition: taggedAsClass(s, "Request"),
        },
        {
            Sid: "ManageOwnKeys",
            Effect: "Allow",
            Action: [
                "kms:DescribeKey",
                "kms:GetKeyPolicy",
                "kms:GetKeyRotationStatus",
                "kms:ListResourceTags",
                "kms:PutKeyPolicy",
                "kms:EnableKeyRotation",
                "kms:DisableKeyRotation",
                "kms:UpdateKeyDescription",
                "kms:ScheduleKeyDeletion",
                "kms:CancelKeyDeletion",
                "kms:UntagResource",
                "kms:CreateAlias",
                "kms:UpdateAlias",
                "kms:DeleteAlias",
                // Kinesis authorises turning stream encryption on and off on the key as well.
                "kinesis:StartStreamEncryption",
                "kinesis:StopStreamEncryption",
                // The services that encrypt with the key on the deployer's behalf (DynamoDB creates
                // grants; Kinesis, Secrets Manager and the smoke test's reads use the key).
                "kms:CreateGrant",
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
            ],
            Resource: keys,
            Condition: taggedAsClass(s, "Resource"),
        },
        {
            Sid: "ManageOwnAliases",
            Effect: "Allow",
            Action: ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"],
            Resource: aliases,
        },
        {
            Sid: "ListAliases",
            Effect: "Allow",
            Action: "kms:ListAliases",
            // ListAliases authorises only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html
            Resource: "*",
        },
        {
            // A key that carries an `environment` tag of another class (or of the bootstrap stack)
            // is never retagged, so no deployer can make another class's key its own.
            Sid: "DenyRetaggingOtherKeys",
            Effect: "Deny",
            Action: ["kms:TagResource", "kms:UntagResource"],
            Resource: "*",
            Condition: {
                Null: { "aws:ResourceTag/environment": "false" },
                StringNotLike: { "aws:ResourceTag/environment": s.tags.environment ?? "" },
            },
        },
    ];
}

function networkPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const arn = s.arn;
    const ec2 = (type: string) => arn("ec2", `${type}/*`);
    const creates = ["ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup", "ec2:CreateVpcEndpoint"];
    return [
        {
            // EC2 picks the ids: a network resource is the class's by the tags it is created with.
            Sid: "CreateNetworkTaggedAsOwn",
            Effect: "Allow",
            Action: creates,
            Resource: [ec2("vpc"), ec2("subnet"), ec2("route-table"), ec2("security-group"), ec2("vpc-endpoint")],
            Condition: taggedAsClass(s, "Request"),
        },
        {
            // The resources a new one is created in (its VPC, subnets, route table, security group).
            Sid: "CreateInOwnNetwork",
            Effect: "Allow",
            Action: ["ec2:CreateSubnet", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup", "ec2:CreateVpcEndpoint"],
            Resource: [ec2("vpc"), ec2("subnet"), ec2("route-table"), ec2("security-group")],
            Condition: taggedAsClass(s, "Resource"),
        },
        {
            // The tags a create call carries, which must be the class's.
            Sid: "TagOnCreate",
            Effect: "Allow",
            Action: "ec2:CreateTags",
            Resource: [ec2("vpc"), ec2("subnet"), ec2("route-table"), ec2("security-group"), ec2("vpc-endpoint")],
            Condition: { ...taggedAsClass(s, "Request"), StringEquals: { "ec2:CreateAction": creates.map((a) => a.slice("ec2:".length)) } },
        },
        {
            Sid: "ManageOwnNetwork",
            Effect: "Allow",
            Action: [
                "ec2:CreateTags",
                "ec2:DeleteTags",
                "ec2:DeleteVpc",
                "ec2:ModifyVpcAttribute",
                "ec2:DescribeVpcAttribute",
                "ec2:DeleteSubnet",
                "ec2:ModifySubnetAttribute",
                "ec2:DeleteRouteTable",
                "ec2:AssociateRouteTable",
                "ec2:DisassociateRouteTable",
                "ec2:ReplaceRouteTableAssociation",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
                "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
                "ec2:ModifySecurityGroupRules",
                "ec2:DeleteSecurityGroup",
                "ec2:ModifyVpcEndpoint",
                "ec2:DeleteVpcEndpoints",
            ],
            Resource: [ec2("vpc"), ec2("subnet"), ec2("route-table"), ec2("security-group"), ec2("vpc-endpoint")],
            Condition: taggedAsClass(s, "Resource"),
        },
        {
            // A rule is part of its security group, which ManageOwnNetwork checks in the same request.
            Sid: "RulesOfOwnSecurityGroups",
            Effect: "Allow",
            Action: ["ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:ModifySecurityGroupRules"],
            Resource: ec2("security-group-rule"),
        },
        {
            // The VPC's default security group exists before the program adopts it: the program
            // tags it first (then it is the class's), so an untagged group may receive the class's tags.
            Sid: "AdoptDefaultSecurityGroup",
            Effect: "Allow",
            Action: "ec2:CreateTags",
            Resource: ec2("security-group"),
            Condition: { ...taggedAsClass(s, "Request"), Null: { "aws:ResourceTag/environment": "true" } },
        },
        {
            Sid: "DescribeNetwork",
            Effect: "Allow",
            Action: [
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeVpcs",
                "ec2:DescribeSubnets",
                "ec2:DescribeRouteTables",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSecurityGroupRules",
                "ec2:DescribeNetworkAcls",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeVpcEndpoints",
                "ec2:DescribeVpcEndpointServices",
                "ec2:DescribePrefixLists",
            ],
            // EC2 Describe* actions authorise only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
            Resource: "*",
        },
    ];
}

function auditPolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    return [
        {
            Sid: "ManageOwnTrail",
            Effect: "Allow",
            Action: [
                "cloudtrail:CreateTrail",
                "cloudtrail:DeleteTrail",
                "cloudtrail:UpdateTrail",
                "cloudtrail:GetTrail",
                "cloudtrail:GetTrailStatus",
                "cloudtrail:StartLogging",
                "cloudtrail:StopLogging",
                "cloudtrail:PutEventSelectors",
                "cloudtrail:GetEventSelectors",
                "cloudtrail:GetInsightSelectors",
                "cloudtrail:AddTags",
                "cloudtrail:RemoveTags",
                "cloudtrail:ListTags",
            ],
            Resource: s.arn("cloudtrail", `trail/${s.things}`),
        },
        {
            Sid: "DescribeTrails",
            Effect: "Allow",
            Action: "cloudtrail:DescribeTrails",
            // DescribeTrails authorises only on "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudtrail.html
            Resource: "*",
        },
    ];
}

/** The managed policies of the class's deployer role, in the order they are attached. */
export function deployerPolicyDocuments(f: BootstrapFacts): DeployerPolicy[] {
    const parts: DeployerPolicy[] = [
        { part: "state", description: "Pulumi state and secrets of its own class", document: doc(statePolicy(f)) },
        { part: "iam", description: "Roles of its own class, only with the class's permissions boundary", document: doc(iamPolicy(f)) },
        { part: "functions", description: "Functions, mappings, schedules, log groups, alarms and dashboard of its own class", document: doc(functionsPolicy(f)) },
        { part: "messaging", description: "Streams, queues and topics of its own class", document: doc(messagingPolicy(f)) },
        {
            part: "data",
            description: "Buckets, tables, secrets, catalog and data-event trail of its own class",
            document: doc([...dataPolicy(f), ...(f.network.cloudtrail ? auditPolicy(f) : [])]),
        },
        { part: "keys", description: "KMS keys and aliases of its own class", document: doc(keysPolicy(f)) },
    ];
    if (f.network.vpc) {
        parts.push({ part: "network", description: "The VPC of its own class", document: doc(networkPolicy(f)) });
    }
    return parts;
}

/** Actions that only read: a reader may do those of its deployer. */
const READ_ONLY = /^[a-z0-9-]+:(Get|Describe|List|Head)[A-Za-z]*$/;
export const isReadOnlyAction = (action: string): boolean => READ_ONLY.test(action);
/**
 * Reads of the pipeline's data, which a reader needs for neither a preview nor a drift check; the
 * deployer has them for the smoke test.
 */
export const DATA_READS: readonly string[] = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "secretsmanager:GetSecretValue",
];

function readerStatePolicy(f: BootstrapFacts): Statement[] {
    const s = scope(f);
    const bucket = s3Arn(f, stateBucketName(f.project, f.accountId));
    const own = statePrefix(f.envClass);
    const readable = [own, ...readsStateOf(f.envClass).map(statePrefix)];
    return [
        {
            Sid: "ReadState",
            Effect: "Allow",
            Action: "s3:GetObject",
            Resource: readable.map((p) => `${bucket}/${p}/*`),
        },
        {
            // Some Pulumi versions take the stack's lock even for `refresh --preview-only`.
            Sid: "TakeOwnStateLocks",
            Effect: "Allow",
            Action: ["s3:PutObject", "s3:DeleteObject"],
            Resource: `${bucket}/${own}/.pulumi/locks/*`,
        },
        {
            Sid: "ListState",
            Effect: "Allow",
            Action: "s3:ListBucket",
            Resource: bucket,
            Condition: { StringLike: { "s3:prefix": readable.flatMap((p) => [p, `${p}/*`]) } },
        },
        {
            Sid: "LocateStateBucket",
            Effect: "Allow",
            Action: "s3:GetBucketLocation",
            Resource: bucket,
        },
        {
            Sid: "UseStateKeyThroughS3",
            Effect: "Allow",
            Action: ["kms:Decrypt", "kms:GenerateDataKey"],
            Resource: s.arn("kms", "key/*"),
            Condition: {
                StringEquals: { "kms:ViaService": `s3.${f.region}.amazonaws.com` },
                "ForAnyValue:StringEquals": { "kms:ResourceAliases": stateKeyAlias(f.project) },
            },
        },
        {
            Sid: "DecryptStackKeys",
            Effect: "Allow",
            Action: ["kms:Decrypt", "kms:DescribeKey"],
            Resource: s.arn("kms", "key/*"),
            Condition: { "ForAnyValue:StringEquals": { "kms:ResourceAliases": readable.map((c) => secretsKeyAlias(f.project, c as DeployedClass)) } },
        },
    ];
}

/**
 * The managed policies of a class's reader: its state (and the locks of its own stacks), and the
 * deployer's reads of the class's resources, which are what `pulumi preview` and
 * `pulumi refresh --preview-only` call; never a write, never the pipeline's data.
 */
export function readerPolicyDocuments(f: BootstrapFacts): DeployerPolicy[] {
    if (!READER_CLASSES.includes(f.envClass)) {
        throw new Error(`\`${f.envClass}\` has no reader role`);
    }
    const reads = (statements: Statement[]): Statement[] =>
        statements.flatMap((st) => {
            if (st.Effect === "Deny") {
                return [st];
            }
            const actions = [st.Action].flat().filter((a) => READ_ONLY.test(a) && !DATA_READS.includes(a));
            return actions.length === 0 ? [] : [{ ...st, Action: actions }];
        });
    const parts = deployerPolicyDocuments(f)
        .filter((p) => p.part !== "state")
        .map((p) => ({ ...p, description: `Reads: ${p.description.charAt(0).toLowerCase()}${p.description.slice(1)}`, document: doc(reads(p.document.Statement)) }))
        .filter((p) => p.document.Statement.some((st) => st.Effect === "Allow"));
    return [{ part: "state", description: "Pulumi state of its own class, read-only but for its locks", document: doc(readerStatePolicy(f)) }, ...parts];
}

/** The managed policies of a role of either kind. */
export function rolePolicyDocuments(f: BootstrapFacts, kind: RoleKind): DeployerPolicy[] {
    return kind === "deployer" ? deployerPolicyDocuments(f) : readerPolicyDocuments(f);
}

// ---------------------------------------------------------------------------------------------
// The state bucket and its keys
// ---------------------------------------------------------------------------------------------

export interface StateFacts {
    project: string;
    accountId: string;
    region: string;
    partition: string;
}

/**
 * The state bucket's policy: TLS only (as every bucket of the project), and no object written with
 * an encryption other than the state key (an upload may name its own; default encryption only
 * applies when it names none).
 */
export function stateBucketPolicyDocument(f: StateFacts, stateKeyArn: string): PolicyDocument {
    const bucket = s3Arn(f as BootstrapFacts, stateBucketName(f.project, f.accountId));
    return doc([
        {
            Sid: "DenyInsecureTransport",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:*",
            Resource: [bucket, `${bucket}/*`],
            Condition: { Bool: { "aws:SecureTransport": "false" } },
        },
        {
            Sid: "DenyOtherEncryption",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:PutObject",
            Resource: `${bucket}/*`,
            Condition: {
                Null: { "s3:x-amz-server-side-encryption": "false" },
                StringNotEquals: { "s3:x-amz-server-side-encryption": "aws:kms" },
            },
        },
        {
            Sid: "DenyOtherKeys",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:PutObject",
            Resource: `${bucket}/*`,
            Condition: {
                Null: { "s3:x-amz-server-side-encryption-aws-kms-key-id": "false" },
                StringNotEquals: { "s3:x-amz-server-side-encryption-aws-kms-key-id": stateKeyArn },
            },
        },
    ]);
}

const KEY_USE = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext"];

/** The account administers the key through IAM: without it, nobody could manage it. */
function accountAdministers(f: StateFacts): Statement {
    return {
        Sid: "AccountAdministersKeyThroughIam",
        Effect: "Allow",
        Principal: { AWS: `arn:${f.partition}:iam::${f.accountId}:root` },
        Action: "kms:*",
        Resource: "*",
    };
}

/**
 * The state key serves the state bucket and nothing else: any use that does not come through S3 for
 * that bucket is denied, whoever asks. Use through S3 is granted by IAM (the deployers' `state`
 * policies). A key policy's `Resource` is always `*`: it means this key.
 */
export function stateKeyPolicyDocument(f: StateFacts): PolicyDocument {
    const bucket = s3Arn(f as BootstrapFacts, stateBucketName(f.project, f.accountId));
    return doc([
        accountAdministers(f),
        {
            Sid: "OnlyThroughS3",
            Effect: "Deny",
            Principal: "*",
            Action: KEY_USE,
            Resource: "*",
            Condition: { StringNotEquals: { "kms:ViaService": `s3.${f.region}.amazonaws.com` } },
        },
        {
            // With an S3 Bucket Key the encryption context is the bucket, without one the object.
            Sid: "OnlyForTheStateBucket",
            Effect: "Deny",
            Principal: "*",
            Action: KEY_USE,
            Resource: "*",
            Condition: { StringNotLike: { "kms:EncryptionContext:aws:s3:arn": [bucket, `${bucket}/*`] } },
        },
    ]);
}

/** A secrets provider key: administered by the account, used by the deployers that IAM allows. */
export function secretsKeyPolicyDocument(f: StateFacts): PolicyDocument {
    return doc([accountAdministers(f)]);
}
