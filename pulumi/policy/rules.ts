// The project's policies as pure functions over (resource type, properties).
//
// `policy/index.ts` wraps them in a CrossGuard policy pack that the Pulumi CLI enforces on every
// preview and update; the tests run the same functions over every resource the program registers
// for each stack flavour, plus a violating resource per policy.
//
// Properties are the Pulumi property names of the resources (camelCase), as CrossGuard and the
// test mocks present them. During a preview CrossGuard hides values that are not known yet: a
// policy that reads one is skipped for that resource, and enforced again on the update.

export interface ResourceLike {
    type: string;
    name: string;
    urn?: string;
    props: Record<string, unknown>;
}

export interface Violation {
    policy: string;
    resource: string;
    urn?: string;
    message: string;
}

export interface ResourcePolicy {
    name: string;
    description: string;
    /** Violation messages for one resource; empty when it complies or the policy does not apply. */
    validate(resource: ResourceLike): string[];
}

export interface StackPolicy {
    name: string;
    description: string;
    validate(resources: ResourceLike[]): { resource?: ResourceLike; message: string }[];
}

export const T = {
    bucket: ["aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"],
    bucketSse: [
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    ],
    bucketPab: ["aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"],
    bucketPolicy: ["aws:s3/bucketPolicy:BucketPolicy"],
    queue: ["aws:sqs/queue:Queue"],
    queuePolicy: ["aws:sqs/queuePolicy:QueuePolicy"],
    topic: ["aws:sns/topic:Topic"],
    topicPolicy: ["aws:sns/topicPolicy:TopicPolicy"],
    table: ["aws:dynamodb/table:Table"],
    stream: ["aws:kinesis/stream:Stream"],
    secret: ["aws:secretsmanager/secret:Secret"],
    logGroup: ["aws:cloudwatch/logGroup:LogGroup"],
    fn: ["aws:lambda/function:Function"],
    esm: ["aws:lambda/eventSourceMapping:EventSourceMapping"],
    invokeConfig: ["aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"],
    alarm: ["aws:cloudwatch/metricAlarm:MetricAlarm"],
    rolePolicy: ["aws:iam/rolePolicy:RolePolicy"],
    policy: ["aws:iam/policy:Policy"],
    role: ["aws:iam/role:Role"],
    managedAttachment: [
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/policyAttachment:PolicyAttachment",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    ],
} as const;

const is = (r: ResourceLike, types: readonly string[]): boolean => types.includes(r.type);

function obj(v: unknown): Record<string, unknown> | undefined {
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function list(v: unknown): unknown[] {
    if (v === undefined || v === null) {
        return [];
    }
    return Array.isArray(v) ? v : [v];
}

const nonEmpty = (v: unknown): boolean => typeof v === "string" && v.trim() !== "";
const intIn = (v: unknown, lo: number, hi: number): boolean => typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi;

// ---------------------------------------------------------------------------------------------
// IAM: no wildcards
// ---------------------------------------------------------------------------------------------

/**
 * Actions that AWS authorises only on `Resource: "*"`. A statement may use `"*"` as a resource
 * only if every one of its actions is in this list. Keep it short: each entry is an exception that
 * a reviewer has checked against the AWS Service Authorization Reference.
 */
export const RESOURCE_WILDCARD_ACTIONS: readonly string[] = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
];

/** AWS managed policies that may be attached to a role. None: every permission is an inline statement. */
export const ALLOWED_MANAGED_POLICY_ARNS: readonly string[] = [];

const ACTION = /^[a-z0-9-]+:[A-Za-z0-9]+$/;
/**
 * A resource with a wildcard: a fully specified ARN (partition, service, region and account are
 * literal, possibly empty as in S3) whose only `*` is the last character, right after `/` or `:`.
 * This admits object prefixes (`arn:aws:s3:::bucket/raw/*`), log streams of one log group
 * (`...:log-group:name:log-stream:*`) and one resource type of one account and region
 * (`arn:aws:ec2:eu-west-1:123456789012:network-interface/*`).
 */
const PREFIX_WILDCARD_ARN = /^arn:[a-z-]+:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:[^*]+[/:]\*$/;

/**
 * The Pulumi project of the bootstrap stacks (pulumi/bootstrap): the GitHub Actions roles of each
 * class of stack, the permissions boundaries every pipeline role carries and the state bucket.
 *
 * The one exception to iam-no-wildcards. Those documents grant over resources that do not exist
 * yet and whose ids AWS picks, so they scope by name prefix (`eventpipe-dev-*`), by the program's
 * ownership tags and by condition keys (`iam:PermissionsBoundary`, `lambda:FunctionArn`), and they
 * use more of the actions AWS authorises only on "*" (kms:CreateKey, lambda:CreateEventSourceMapping,
 * EC2 Describe*; each cited where it is used). They are too large for a role's inline policies
 * (10,240 characters), so they are customer managed policies. For resources of that project only,
 * the rule admits name-prefix wildcards, "*" resources and attachments of customer managed
 * policies; it still requires explicit actions, no Not* elements, no public principals and no AWS
 * managed policies. What the documents allow and refuse is proved with the IAM policy simulator
 * instead (test/bootstrap-*.test.ts).
 */
export const BOOTSTRAP_PROJECT = "eventpipe-bootstrap";

/** The Pulumi project of a resource, from its URN (`urn:pulumi:<stack>::<project>::<type>::<name>`). */
export function projectOfUrn(urn: string | undefined): string | undefined {
    return urn?.split("::")[1];
}

/** AWS managed policies have `aws` for an account: `arn:aws:iam::aws:policy/...`. */
const AWS_MANAGED_POLICY = /^arn:[a-z-]+:iam::aws:policy\//;

export interface Statement {
    Sid?: string;
    Effect?: string;
    Principal?: unknown;
    NotPrincipal?: unknown;
    Action?: unknown;
    NotAction?: unknown;
    Resource?: unknown;
    NotResource?: unknown;
    Condition?: unknown;
}

/** The statements of a policy document given as JSON text or as an object; undefined if not a document. */
export function statementsOf(policy: unknown): Statement[] | undefined {
    let doc: unknown = policy;
    if (typeof policy === "string") {
        try {
            doc = JSON.parse(policy);
        } catch {
            return undefined;
        }
    }
    const o = obj(doc);
    if (!o) {
        return undefined;
    }
    return list(o.Statement).map((s) => (obj(s) ?? {}) as Statement);
}

function isPublicPrincipal(p: unknown): boolean {
    if (p === "*") {
        return true;
    }
    const o = obj(p);
    return o !== undefined && list(o.AWS).includes("*");
}

/**
 * Problems of one policy document under the no-wildcard rule; Deny statements only restrict. With
 * `scopedByName` (the bootstrap project's documents), resources are not checked for wildcards.
 */
export function wildcardProblems(policy: unknown, options: { scopedByName?: boolean } = {}): string[] {
    const statements = statementsOf(policy);
    if (!statements) {
        return ["the policy is not a JSON policy document"];
    }
    const problems: string[] = [];
    statements.forEach((s, i) => {
        if (s.Effect !== "Allow") {
            return;
        }
        const label = s.Sid ? `statement ${s.Sid}` : `statement ${i}`;
        if (s.NotAction !== undefined) {
            problems.push(`${label}: NotAction allows every other action`);
        }
        if (s.NotResource !== undefined) {
            problems.push(`${label}: NotResource allows every other resource`);
        }
        if (s.NotPrincipal !== undefined) {
            problems.push(`${label}: NotPrincipal allows every other principal`);
        }
        if (isPublicPrincipal(s.Principal)) {
            problems.push(`${label}: allows any principal ("*")`);
        }
        const actions = list(s.Action);
        if (actions.length === 0 && s.NotAction === undefined) {
            problems.push(`${label}: has no Action`);
        }
        for (const a of actions) {
            if (typeof a !== "string" || !ACTION.test(a)) {
                problems.push(`${label}: action ${JSON.stringify(a)} is not one explicit action (no "*", no "service:*", no prefixes)`);
            }
        }
        const resources = list(s.Resource);
        // Resource policies (bucket, queue, topic) may leave Resource out only in IAM's own forms; require it.
        if (resources.length === 0 && s.NotResource === undefined) {
            problems.push(`${label}: has no Resource`);
        }
        for (const r of resources) {
            if (typeof r !== "string") {
                problems.push(`${label}: resource ${JSON.stringify(r)} is not a string`);
            } else if (options.scopedByName) {
                continue;
            } else if (r === "*") {
                const unscoped = actions.filter((a) => typeof a !== "string" || !RESOURCE_WILDCARD_ACTIONS.includes(a));
                if (unscoped.length > 0) {
                    problems.push(
                        `${label}: resource "*" with ${unscoped.join(", ")}; "*" is allowed only for ${RESOURCE_WILDCARD_ACTIONS.join(", ")}`,
                    );
                }
            } else if (r.includes("*") && !PREFIX_WILDCARD_ARN.test(r)) {
                problems.push(`${label}: resource ${r} has a wildcard other than a trailing "/*" or ":*" on a fully specified ARN`);
            } else if (r.includes("?")) {
                problems.push(`${label}: resource ${r} has a "?" wildcard`);
            }
        }
    });
    return problems;
}

export const iamNoWildcards: ResourcePolicy = {
    name: "iam-no-wildcards",
    description:
        "Allow statements in role, identity, bucket, queue and topic policies name explicit actions (no `*`, `s3:*` or `s3:Get*`) " +
        "on explicit resources. `*` as a resource is allowed only for the listed actions that AWS authorises on `*` alone " +
        "(X-Ray trace upload, EC2 Describe*); a wildcard inside an ARN is allowed only as a trailing `/*` or `:*` after a fully " +
        "specified prefix (an object prefix, one log group's streams). No public principals, no Not* elements, no managed policies. " +
        "Deny statements may use wildcards: they only restrict. KMS key policies are out of scope (their Resource is always `*`). " +
        `Exception: the bootstrap project (\`${BOOTSTRAP_PROJECT}\`) may scope resources by name prefix and attach its own customer managed policies.`,
    validate(r) {
        const scopedByName = projectOfUrn(r.urn) === BOOTSTRAP_PROJECT;
        if (is(r, T.managedAttachment)) {
            const arn = r.props.policyArn;
            if (scopedByName && typeof arn === "string" && !AWS_MANAGED_POLICY.test(arn)) {
                return [];
            }
            return typeof arn === "string" && ALLOWED_MANAGED_POLICY_ARNS.includes(arn)
                ? []
                : [`managed policy ${String(arn)} is not allowed: write an inline policy with explicit actions and resources`];
        }
        if (is(r, T.role)) {
            return list(r.props.inlinePolicies).flatMap((p) => {
                const doc = obj(p)?.policy;
                return doc === undefined || doc === "" ? [] : wildcardProblems(doc, { scopedByName }).map((m) => `inline policy: ${m}`);
            });
        }
        if (is(r, T.rolePolicy) || is(r, T.policy) || is(r, T.bucketPolicy) || is(r, T.queuePolicy) || is(r, T.topicPolicy)) {
            return wildcardProblems(r.props.policy, { scopedByName });
        }
        return [];
    },
};

// ---------------------------------------------------------------------------------------------
// Encryption at rest
// ---------------------------------------------------------------------------------------------

export const encryptionAtRest: ResourcePolicy = {
    name: "encryption-at-rest",
    description:
        "Every data store and queue is encrypted with a customer managed KMS key: Kinesis streams (KMS), DynamoDB tables " +
        "(SSE with a customer key), SQS queues, SNS topics, Secrets Manager secrets and CloudWatch log groups; S3 default " +
        "encryption is SSE-KMS with a customer key, or SSE-S3 (which buckets may use SSE-S3, and which must use an S3 Bucket " +
        "Key, depends on the bucket's role: checked per bucket by s3-bucket-baseline).",
    validate(r) {
        const p = r.props;
        if (is(r, T.stream)) {
            return p.encryptionType === "KMS" && nonEmpty(p.kmsKeyId) ? [] : ["the stream is not encrypted with a KMS key (encryptionType KMS, kmsKeyId)"];
        }
        if (is(r, T.table)) {
            const sse = obj(p.serverSideEncryption);
            return sse?.enabled === true && nonEmpty(sse.kmsKeyArn)
                ? []
                : ["the table is not encrypted with a customer managed KMS key (serverSideEncryption.enabled, kmsKeyArn)"];
        }
        if (is(r, T.queue)) {
            return nonEmpty(p.kmsMasterKeyId) ? [] : ["the queue is not encrypted with a KMS key (kmsMasterKeyId)"];
        }
        if (is(r, T.topic)) {
            return nonEmpty(p.kmsMasterKeyId) ? [] : ["the topic is not encrypted with a KMS key (kmsMasterKeyId)"];
        }
        if (is(r, T.secret)) {
            return nonEmpty(p.kmsKeyId) ? [] : ["the secret is not encrypted with a customer managed KMS key (kmsKeyId)"];
        }
        if (is(r, T.logGroup)) {
            return nonEmpty(p.kmsKeyId) ? [] : ["the log group is not encrypted with a KMS key (kmsKeyId)"];
        }
        if (is(r, T.bucketSse)) {
            const rules = list(p.rules);
            if (rules.length === 0) {
                return ["no default encryption rule"];
            }
            return rules.flatMap((rule) => {
                const d = obj(obj(rule)?.applyServerSideEncryptionByDefault);
                const alg = d?.sseAlgorithm;
                if (alg === "aws:kms" || alg === "aws:kms:dsse") {
                    return nonEmpty(d?.kmsMasterKeyId) ? [] : ["SSE-KMS without a customer managed key (kmsMasterKeyId)"];
                }
                return alg === "AES256" ? [] : [`unknown default encryption ${JSON.stringify(alg)}`];
            });
        }
        return [];
    },
};

// ---------------------------------------------------------------------------------------------
// S3: public access block, TLS only
// ---------------------------------------------------------------------------------------------

export const s3PublicAccessBlock: ResourcePolicy = {
    name: "s3-public-access-block",
    description: "A bucket's public access block sets all four flags.",
    validate(r) {
        if (!is(r, T.bucketPab)) {
            return [];
        }
        const missing = ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"].filter((k) => r.props[k] !== true);
        return missing.length === 0 ? [] : [`public access block without ${missing.join(", ")}`];
    },
};

/** Whether a bucket policy denies every request without TLS, on the bucket and on its objects. */
export function deniesInsecureTransport(policy: unknown): boolean {
    const statements = statementsOf(policy) ?? [];
    return statements.some((s) => {
        if (s.Effect !== "Deny" || !isPublicPrincipal(s.Principal)) {
            return false;
        }
        const actions = list(s.Action);
        if (!actions.includes("s3:*") && !actions.includes("*")) {
            return false;
        }
        const secure = obj(obj(s.Condition)?.Bool)?.["aws:SecureTransport"];
        if (secure !== "false" && secure !== false) {
            return false;
        }
        const resources = list(s.Resource).filter((x): x is string => typeof x === "string");
        return resources.some((x) => !x.includes("/")) && resources.some((x) => x.endsWith("/*"));
    });
}

export const s3TlsOnly: ResourcePolicy = {
    name: "s3-tls-only",
    description: "A bucket policy denies every request that does not use TLS (aws:SecureTransport false), on the bucket and its objects.",
    validate(r) {
        if (!is(r, T.bucketPolicy)) {
            return [];
        }
        return deniesInsecureTransport(r.props.policy) ? [] : ["the bucket policy does not deny requests without TLS on the bucket and its objects"];
    },
};

// ---------------------------------------------------------------------------------------------
// Lambda: failure destinations, finite retries and age
// ---------------------------------------------------------------------------------------------

export const lambdaFailureDestinations: ResourcePolicy = {
    name: "lambda-failure-destinations",
    description:
        "Every stream event-source mapping has an on-failure destination, finite retries (0-10000) and a finite record age " +
        "(60-604800 s); every function event invoke config has an on-failure destination, retries 0-2 and an event age of " +
        "60-21600 s. Nothing is retried forever and nothing is dropped silently.",
    validate(r) {
        const p = r.props;
        if (is(r, T.esm)) {
            const source = p.eventSourceArn;
            if (typeof source === "string" && source.includes(":sqs:")) {
                return []; // SQS sources fail over through the queue's own redrive policy.
            }
            const problems: string[] = [];
            if (!nonEmpty(obj(obj(p.destinationConfig)?.onFailure)?.destinationArn)) {
                problems.push("no on-failure destination (destinationConfig.onFailure.destinationArn)");
            }
            if (!intIn(p.maximumRetryAttempts, 0, 10_000)) {
                problems.push(`maximumRetryAttempts must be set to 0-10000, not ${JSON.stringify(p.maximumRetryAttempts)} (unset or -1 retries forever)`);
            }
            if (!intIn(p.maximumRecordAgeInSeconds, 60, 604_800)) {
                problems.push(`maximumRecordAgeInSeconds must be set to 60-604800, not ${JSON.stringify(p.maximumRecordAgeInSeconds)} (unset or -1 keeps records forever)`);
            }
            return problems;
        }
        if (is(r, T.invokeConfig)) {
            const problems: string[] = [];
            if (!nonEmpty(obj(obj(p.destinationConfig)?.onFailure)?.destination)) {
                problems.push("no on-failure destination (destinationConfig.onFailure.destination)");
            }
            if (!intIn(p.maximumRetryAttempts, 0, 2)) {
                problems.push(`maximumRetryAttempts must be set to 0-2, not ${JSON.stringify(p.maximumRetryAttempts)}`);
            }
            if (!intIn(p.maximumEventAgeInSeconds, 60, 21_600)) {
                problems.push(`maximumEventAgeInSeconds must be set to 60-21600, not ${JSON.stringify(p.maximumEventAgeInSeconds)}`);
            }
            return problems;
        }
        return [];
    },
};

// ---------------------------------------------------------------------------------------------
// Stack policies
// ---------------------------------------------------------------------------------------------

/** The tag that marks a bucket's role; `access-logs` buckets may (must) use SSE-S3. */
export const BUCKET_ROLE_TAG = "bucket-role";
export const ACCESS_LOG_BUCKET_ROLE = "access-logs";
/**
 * Buckets that use SSE-KMS without an S3 Bucket Key: only the CloudTrail bucket. AWS documents that
 * a trail delivering to an SSE-KMS bucket with an S3 Bucket Key needs `kms:Decrypt` in the key
 * policy ("Configure AWS KMS key policies for CloudTrail", Granting decrypt permissions:
 * https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html),
 * and a bucket key changes the encryption context KMS sees from the object to the bucket ARN
 * ("Reducing the cost of SSE-KMS with Amazon S3 Bucket Keys", Changes to note before enabling:
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-key.html). Rather than give the
 * CloudTrail service `kms:Decrypt` on the key that protects the pipeline's data, the trail bucket
 * uses per-object data keys, so the documented encrypt statements (`kms:GenerateDataKey` with the
 * `aws:cloudtrail:arn` encryption context and `aws:SourceArn`) are the whole grant. The bucket key
 * saves little there: a trail writes a few log and digest files an hour, each costing one KMS
 * request. `SecureBucket` reads this list, so the exception and the bucket agree.
 */
export const NO_BUCKET_KEY_BUCKET_ROLES: readonly string[] = ["audit-logs"];

function tagsOf(r: ResourceLike): Record<string, unknown> {
    return { ...(obj(r.props.tagsAll) ?? {}), ...(obj(r.props.tags) ?? {}) };
}

export const s3BucketBaseline: StackPolicy = {
    name: "s3-bucket-baseline",
    description:
        "Every bucket has a public access block with all four flags, default encryption (SSE-KMS; SSE-S3 only for buckets " +
        "tagged bucket-role=access-logs, as S3 delivers server access logs only to SSE-S3 buckets), an S3 Bucket Key with " +
        "SSE-KMS (except buckets tagged bucket-role=audit-logs: CloudTrail delivery to a bucket with a bucket key needs " +
        "kms:Decrypt for the trail) and a bucket policy that denies requests without TLS.",
    validate(resources) {
        const byBucket = (types: readonly string[]) => {
            const m = new Map<unknown, ResourceLike[]>();
            for (const r of resources.filter((x) => is(x, types))) {
                m.set(r.props.bucket, [...(m.get(r.props.bucket) ?? []), r]);
            }
            return m;
        };
        const pabs = byBucket(T.bucketPab);
        const sses = byBucket(T.bucketSse);
        const policies = byBucket(T.bucketPolicy);
        const out: { resource?: ResourceLike; message: string }[] = [];
        for (const b of resources.filter((x) => is(x, T.bucket))) {
            const name = b.props.bucket;
            const label = `bucket ${String(name)}`;
            if (!(pabs.get(name) ?? []).some((p) => s3PublicAccessBlock.validate(p).length === 0)) {
                out.push({ resource: b, message: `${label} has no public access block with all four flags` });
            }
            const sse = sses.get(name) ?? [];
            if (sse.length === 0) {
                out.push({ resource: b, message: `${label} has no default encryption configuration` });
            } else {
                const role = tagsOf(b)[BUCKET_ROLE_TAG];
                const accessLogs = role === ACCESS_LOG_BUCKET_ROLE;
                const rules = sse.flatMap((s) => list(s.props.rules).map((rule) => obj(rule) ?? {}));
                const isKms = (rule: Record<string, unknown>) => {
                    const a = obj(rule.applyServerSideEncryptionByDefault)?.sseAlgorithm;
                    return a === "aws:kms" || a === "aws:kms:dsse";
                };
                if (!accessLogs && !rules.every(isKms)) {
                    out.push({ resource: b, message: `${label} is not encrypted with SSE-KMS (only ${BUCKET_ROLE_TAG}=${ACCESS_LOG_BUCKET_ROLE} buckets may use SSE-S3)` });
                }
                const bucketKeyExempt = typeof role === "string" && NO_BUCKET_KEY_BUCKET_ROLES.includes(role);
                if (!bucketKeyExempt && rules.some((rule) => isKms(rule) && rule.bucketKeyEnabled !== true)) {
                    out.push({
                        resource: b,
                        message: `${label} uses SSE-KMS without an S3 Bucket Key (bucketKeyEnabled); only ${BUCKET_ROLE_TAG}=${NO_BUCKET_KEY_BUCKET_ROLES.join("|")} buckets may`,
                    });
                }
            }
            if (!(policies.get(name) ?? []).some((p) => deniesInsecureTransport(p.props.policy))) {
                out.push({ resource: b, message: `${label} has no bucket policy that denies requests without TLS` });
            }
        }
        return out;
    },
};

export const lambdaLogGroupRetention: StackPolicy = {
    name: "lambda-log-group-retention",
    description:
        "Every function logs to a log group of this stack that has a retention period: the one named in loggingConfig.logGroup, " +
        "or /aws/lambda/<function name>.",
    validate(resources) {
        const groups = new Map(resources.filter((r) => is(r, T.logGroup)).map((r) => [r.props.name, r]));
        const out: { resource?: ResourceLike; message: string }[] = [];
        for (const fn of resources.filter((r) => is(r, T.fn))) {
            const configured = obj(fn.props.loggingConfig)?.logGroup;
            const groupName = nonEmpty(configured) ? configured : `/aws/lambda/${String(fn.props.name)}`;
            const group = groups.get(groupName);
            if (!group) {
                out.push({ resource: fn, message: `function ${String(fn.props.name)} logs to ${String(groupName)}, which is not a log group of this stack` });
            } else if (!(typeof group.props.retentionInDays === "number" && group.props.retentionInDays > 0)) {
                out.push({ resource: group, message: `log group ${String(groupName)} of function ${String(fn.props.name)} has no retention period` });
            }
        }
        return out;
    },
};

export const dlqAlarm: StackPolicy = {
    name: "dlq-alarm",
    description:
        "Every dead letter queue (a queue named *-dlq, or the on-failure destination of a mapping or invoke config) has an " +
        "alarm on ApproximateNumberOfMessagesVisible with an alarm action.",
    validate(resources) {
        const destinations = new Set<unknown>();
        for (const r of resources) {
            const onFailure = obj(obj(r.props.destinationConfig)?.onFailure);
            if (is(r, T.esm)) {
                destinations.add(onFailure?.destinationArn);
            } else if (is(r, T.invokeConfig)) {
                destinations.add(onFailure?.destination);
            }
        }
        const alarmed = new Set<unknown>();
        for (const a of resources.filter((r) => is(r, T.alarm))) {
            if (
                a.props.namespace === "AWS/SQS" &&
                a.props.metricName === "ApproximateNumberOfMessagesVisible" &&
                list(a.props.alarmActions).length > 0
            ) {
                alarmed.add(obj(a.props.dimensions)?.QueueName);
            }
        }
        const out: { resource?: ResourceLike; message: string }[] = [];
        for (const q of resources.filter((r) => is(r, T.queue))) {
            const name = q.props.name;
            const isDlq = (typeof name === "string" && name.endsWith("-dlq")) || (q.props.arn !== undefined && destinations.has(q.props.arn));
            if (isDlq && !alarmed.has(name)) {
                out.push({ resource: q, message: `dead letter queue ${String(name)} has no ApproximateNumberOfMessagesVisible alarm with an action` });
            }
        }
        return out;
    },
};

export const RESOURCE_POLICIES: readonly ResourcePolicy[] = [
    iamNoWildcards,
    encryptionAtRest,
    s3PublicAccessBlock,
    s3TlsOnly,
    lambdaFailureDestinations,
];

export const STACK_POLICIES: readonly StackPolicy[] = [s3BucketBaseline, lambdaLogGroupRetention, dlqAlarm];

/** Every violation of every policy, over a whole stack's resources. */
export function checkAll(resources: ResourceLike[]): Violation[] {
    const violations: Violation[] = [];
    for (const r of resources) {
        for (const p of RESOURCE_POLICIES) {
            for (const message of p.validate(r)) {
                violations.push({ policy: p.name, resource: r.name, urn: r.urn, message });
            }
        }
    }
    for (const p of STACK_POLICIES) {
        for (const v of p.validate(resources)) {
            violations.push({ policy: p.name, resource: v.resource?.name ?? "(stack)", urn: v.resource?.urn, message: v.message });
        }
    }
    return violations;
}
