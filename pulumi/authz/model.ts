// The authorisation model of one stack: who may do what, as the Pulumi program declares it.
//
// `render.ts` builds it from the program run under mocks; the local provisioner
// (services/local-stack) creates the emulator's roles, keys and resource policies from it, and the
// offline gate (`gate.ts`) evaluates every request the pipeline makes against it. Both read the
// same documents, so a change to the program changes what the local stack allows.

export type PolicyDocument = { Version: string; Statement: Statement[] };

export interface Statement {
    Sid?: string;
    Effect: "Allow" | "Deny";
    Principal?: unknown;
    Action?: string | string[];
    NotAction?: string | string[];
    Resource?: string | string[];
    NotResource?: string | string[];
    Condition?: Record<string, Record<string, string | string[]>>;
}

/** A role the pipeline declares: a function's execution role or a tool's role. */
export interface Principal {
    /** `stream-processor`, `transformer`, `auditor` (functions), `producer`, `operator` (tools). */
    id: string;
    kind: "function" | "tool";
    roleName: string;
    roleArn: string;
    trustPolicy: PolicyDocument;
    /** Inline policies, by name. */
    policies: { name: string; document: PolicyDocument }[];
    permissionsBoundary?: { arn: string; document: PolicyDocument };
}

export type ResourceKind =
    | "s3-bucket"
    | "sqs-queue"
    | "sns-topic"
    | "kms-key"
    | "secret"
    | "kinesis-stream"
    | "dynamodb-table"
    | "lambda-function"
    | "log-group";

/** A resource that holds data or carries a resource policy. */
export interface Resource {
    kind: ResourceKind;
    /** The Pulumi logical name (what a placeholder names). */
    logical: string;
    name: string;
    arn: string;
    /** Its tags (the provider's default tags and its own): what `aws:ResourceTag/*` conditions read. */
    tags?: Record<string, string>;
    /** Its resource policy (bucket, queue, topic, key, secret, function), when it has one. */
    policy?: PolicyDocument;
    /** The KMS key that encrypts it, when a customer managed key does. */
    kmsKeyArn?: string;
    /** S3 only: SSE-KMS with an S3 Bucket Key (the encryption context is the bucket, not the object). */
    bucketKey?: boolean;
    /** SQS only. */
    url?: string;
    /** KMS only. */
    alias?: string;
    /** Lambda only: the role it runs with and what the platform does on its behalf. */
    function?: {
        roleArn: string;
        tracing: boolean;
        /** The subnets and security groups of its network interfaces, when it runs in a VPC. */
        vpc?: { subnetArns: string[]; securityGroupArns: string[] };
        logGroupArn?: string;
        /** Kinesis streams an event-source mapping reads for it, and the mapping's on-failure queue. */
        eventSources: { sourceArn: string; onFailureArn?: string }[];
        /** The on-failure destination of asynchronous invocations. */
        asyncOnFailureArn?: string;
    };
}

/**
 * A request that AWS makes **with a role's credentials** on its behalf, which no code of ours makes:
 * Lambda writing the function's logs, the event-source mapping polling the stream, and so on.
 */
export interface PlatformRequest {
    principal: string;
    action: string;
    resource: string;
    context?: Record<string, string | string[]>;
    /** Who makes it, and the AWS documentation page that says so. */
    because: string;
}

export interface Model {
    /** Whose policies: the environment file they were rendered from (`dev`, `prod`, `preview`). */
    policiesOf: string;
    /** Whose names: the stack the documents address (`local`, or the environment itself). */
    stack: string;
    accountId: string;
    region: string;
    partition: string;
    principals: Principal[];
    resources: Resource[];
    platform: PlatformRequest[];
}
