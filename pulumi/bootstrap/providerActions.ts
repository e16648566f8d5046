// What Pulumi's AWS provider asks AWS to authorise, per resource type the pipeline program declares:
// the IAM actions of each create, read, update and delete, and the resources each is authorised on.
//
// The provider is the Terraform AWS provider bridged (@pulumi/aws 7 = terraform-provider-aws 6); the
// API calls of each operation are those of the resource's implementation in
// hashicorp/terraform-provider-aws (`internal/service/<service>/<resource>.go`, named per entry), and
// the IAM action, resource types and condition keys of each call are those of the AWS Service
// Authorization Reference (https://docs.aws.amazon.com/service-authorization/latest/reference/,
// named per entry; the simulator carries the same reference, so a wrong action or resource type
// fails the test). Tagging on create: every taggable resource is created with the provider's default
// tags, which AWS authorises as the service's tagging action as well (noted per entry).
//
// test/bootstrap-deployer.test.ts runs the program under mocks for each stack flavour, collects the
// types it declares, fails for a type missing here, and simulates every call below with the
// deployer's documents (bootstrap/policies.ts). This table is the research, not the policy: the
// deployer's documents are written by hand and must allow what this table says the provider does.

import type { DeployedClass } from "../src/boundary";

export type Op = "create" | "read" | "update" | "delete";

/**
 * `new`: the resource the call creates: it has no tags yet, the request carries them; `existing`: a
 * resource that exists, with the program's tags.
 */
export type Phase = "new" | "existing";

export interface Target {
    arn: string;
    phase: Phase;
}

/** A resource as the program registered it (inputs and the outputs the mocks computed). */
export interface ProgramResource {
    type: string;
    name: string;
    inputs: Record<string, any>;
    state: Record<string, any>;
}

/** Where the program runs, and the rest of what it declared (to look up a role or a function). */
export interface Where {
    accountId: string;
    region: string;
    partition: string;
    resources: ProgramResource[];
}

export interface ProviderCall {
    action: string;
    op: Op;
    /** The resources the call is authorised on; `*` for actions that authorise only on `*`. */
    targets: (r: ProgramResource, w: Where) => Target[];
    /** Context keys the request carries besides tags and TLS (a mapping's function, a role's boundary). */
    context?: (r: ProgramResource, w: Where) => Record<string, string | string[]>;
    /** Only for resources whose inputs ask for it (a provisioned stream's shard count, `forceDestroy`). */
    when?: (r: ProgramResource) => boolean;
    /** The classes whose deployers make the call; default every class. */
    classes?: readonly DeployedClass[];
}

export interface ResourceCalls {
    /** The provider's implementation and the Service Authorization Reference page. */
    source: string[];
    calls: ProviderCall[];
}

/** Registered types that make no AWS call of their own. */
export const NO_AWS_CALLS: readonly string[] = ["pulumi:providers:aws"];

const TF = "hashicorp/terraform-provider-aws internal/service";
const SAR = "https://docs.aws.amazon.com/service-authorization/latest/reference";

// --- ARNs, named from the program's inputs (which the names functions of src/names.ts produced) ----

const regional = (w: Where, service: string, resource: string) => `arn:${w.partition}:${service}:${w.region}:${w.accountId}:${resource}`;
const bucketArn = (w: Where, bucket: string) => `arn:${w.partition}:s3:::${bucket}`;
const roleArn = (w: Where, name: string) => `arn:${w.partition}:iam::${w.accountId}:role/${name}`;
const existing = (arn: string): Target => ({ arn, phase: "existing" });
const fresh = (arn: string): Target => ({ arn, phase: "new" });
const anything = (): Target[] => [existing("*")];

/** A function's ARN from a function name or ARN input. */
function functionArn(w: Where, nameOrArn: string): string {
    return nameOrArn.startsWith("arn:") ? nameOrArn : regional(w, "lambda", `function:${nameOrArn}`);
}
/** A KMS key's ARN from a key id or ARN input. */
function keyArn(w: Where, idOrArn: string): string {
    return idOrArn.startsWith("arn:") ? idOrArn : regional(w, "kms", `key/${idOrArn}`);
}
/** A queue's ARN from its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`). */
function queueArnOfUrl(w: Where, url: string): string {
    return regional(w, "sqs", url.slice(url.lastIndexOf("/") + 1));
}
/** The boundary the program gives a role, from its registered inputs. */
function boundaryOfRole(w: Where, roleName: string): Record<string, string> {
    const role = w.resources.find((x) => x.type === "aws:iam/role:Role" && x.inputs.name === roleName);
    const boundary = role?.inputs.permissionsBoundary;
    return typeof boundary === "string" ? { "iam:PermissionsBoundary": boundary } : {};
}
/** Event-source mappings get their id from Lambda; any id stands for the one Lambda picks. */
export const MAPPING_ID = "14e0db71-5d35-4eb5-b481-8945cf9d10c2";

// --- Shapes shared by several entries -----------------------------------------------------------

const bucketOf = (r: ProgramResource, w: Where) => [existing(bucketArn(w, r.inputs.bucket))];

/** A bucket sub-resource that one S3 action writes (create, update and delete alike) and one reads. */
function bucketSetting(file: string, put: string, get: string, del = put): ResourceCalls {
    return {
        source: [`${TF}/s3/${file}`, `${SAR}/list_amazons3.html`],
        calls: [
            { action: put, op: "create", targets: bucketOf },
            { action: get, op: "read", targets: bucketOf },
            { action: put, op: "update", targets: bucketOf },
            { action: del, op: "delete", targets: bucketOf },
        ],
    };
}

const ec2Arn = (w: Where, type: string, id: string) => regional(w, "ec2", `${type}/${id}`);
const vpcOf = (w: Where, r: ProgramResource) => {
    const vpc = w.resources.find((x) => x.type === "aws:ec2/vpc:Vpc");
    return ec2Arn(w, "vpc", String(vpc?.state.id ?? r.inputs.vpcId ?? "vpc-0123"));
};
const ec2Id = (r: ProgramResource) => String(r.state.id ?? r.name);
const describe = (action: string): ProviderCall => ({ action, op: "read", targets: anything });
const tagOnCreate = (type: string, createAction: string): ProviderCall => ({
    action: "ec2:CreateTags",
    op: "create",
    targets: (r, w) => [fresh(ec2Arn(w, type, ec2Id(r)))],
    context: () => ({ "ec2:CreateAction": createAction }),
});
const retag = (type: string): ProviderCall[] =>
    ["ec2:CreateTags", "ec2:DeleteTags"].map((action) => ({
        action,
        op: "update" as Op,
        targets: (r: ProgramResource, w: Where) => [existing(ec2Arn(w, type, ec2Id(r)))],
    }));

// --- The table ----------------------------------------------------------------------------------

export const PROVIDER_CALLS: Record<string, ResourceCalls> = {
    "aws:kms/key:Key": {
        source: [`${TF}/kms/key.go`, `${SAR}/list_awskeymanagementservice.html`, "https://docs.aws.amazon.com/kms/latest/developerguide/manage-tags-api.html"],
        calls: [
            { action: "kms:CreateKey", op: "create", targets: () => [fresh("*")] },
            // Tags given to CreateKey are authorised as kms:TagResource.
            { action: "kms:TagResource", op: "create", targets: (r) => [fresh(r.state.arn)] },
            ...["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r) => [existing(r.state.arn)] }),
            ),
            { action: "kms:EnableKeyRotation", op: "create", targets: (r) => [existing(r.state.arn)], when: (r) => r.inputs.enableKeyRotation === true },
            ...["kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:PutKeyPolicy", "kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r) => [existing(r.state.arn)] }),
            ),
            { action: "kms:ScheduleKeyDeletion", op: "delete", targets: (r) => [existing(r.state.arn)] },
        ],
    },
    "aws:kms/alias:Alias": {
        source: [`${TF}/kms/alias.go`, `${SAR}/list_awskeymanagementservice.html`],
        calls: [
            ...(["create", "update", "delete"] as Op[]).map(
                (op): ProviderCall => ({
                    action: { create: "kms:CreateAlias", update: "kms:UpdateAlias", delete: "kms:DeleteAlias", read: "" }[op],
                    op,
                    // Authorised on the alias and on the key it points to.
                    targets: (r, w) => [existing(regional(w, "kms", r.inputs.name)), existing(keyArn(w, r.inputs.targetKeyId))],
                }),
            ),
            { action: "kms:ListAliases", op: "read", targets: anything },
        ],
    },
    "aws:s3/bucket:Bucket": {
        source: [`${TF}/s3/bucket.go`, `${SAR}/list_amazons3.html`],
        calls: [
            { action: "s3:CreateBucket", op: "create", targets: bucketOf },
            { action: "s3:PutBucketTagging", op: "create", targets: bucketOf },
            // resourceBucketRead: HeadBucket (s3:ListBucket), then every bucket-level setting, the region and the tags.
            ...[
                "s3:ListBucket",
                "s3:GetBucketPolicy",
                "s3:GetBucketAcl",
                "s3:GetBucketCORS",
                "s3:GetBucketWebsite",
                "s3:GetBucketVersioning",
                "s3:GetAccelerateConfiguration",
                "s3:GetBucketRequestPayment",
                "s3:GetBucketLogging",
                "s3:GetLifecycleConfiguration",
                "s3:GetReplicationConfiguration",
                "s3:GetEncryptionConfiguration",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetBucketLocation",
                "s3:GetBucketTagging",
            ].map((action): ProviderCall => ({ action, op: "read", targets: bucketOf })),
            { action: "s3:PutBucketTagging", op: "update", targets: bucketOf },
            { action: "s3:DeleteBucket", op: "delete", targets: bucketOf },
            // forceDestroy empties the bucket first: every version and delete marker.
            { action: "s3:ListBucketVersions", op: "delete", targets: bucketOf, when: (r) => r.inputs.forceDestroy === true },
            {
                action: "s3:DeleteObjectVersion",
                op: "delete",
                targets: (r, w) => [existing(`${bucketArn(w, r.inputs.bucket)}/raw/2026/01/01/object.json`)],
                when: (r) => r.inputs.forceDestroy === true,
            },
        ],
    },
    // DeleteBucketOwnershipControls, DeleteBucketPublicAccessBlock, DeleteBucketEncryption,
    // DeleteBucketLifecycle are authorised as the corresponding Put action.
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": bucketSetting("bucket_ownership_controls.go", "s3:PutBucketOwnershipControls", "s3:GetBucketOwnershipControls"),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": bucketSetting("bucket_public_access_block.go", "s3:PutBucketPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": bucketSetting(
        "bucket_server_side_encryption_configuration.go",
        "s3:PutEncryptionConfiguration",
        "s3:GetEncryptionConfiguration",
    ),
    "aws:s3/bucketVersioning:BucketVersioning": bucketSetting("bucket_versioning.go", "s3:PutBucketVersioning", "s3:GetBucketVersioning"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": bucketSetting(
        "bucket_lifecycle_configuration.go",
        "s3:PutLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
    ),
    "aws:s3/bucketPolicy:BucketPolicy": bucketSetting("bucket_policy.go", "s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"),
    "aws:s3/bucketLogging:BucketLogging": bucketSetting("bucket_logging.go", "s3:PutBucketLogging", "s3:GetBucketLogging"),
    "aws:s3/bucketNotification:BucketNotification": bucketSetting("bucket_notification.go", "s3:PutBucketNotification", "s3:GetBucketNotification"),
    "aws:dynamodb/table:Table": {
        source: [`${TF}/dynamodb/table.go`, `${SAR}/list_amazondynamodb.html`, "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.usagenotes.html"],
        calls: [
            { action: "dynamodb:CreateTable", op: "create", targets: (r, w) => [fresh(regional(w, "dynamodb", `table/${r.inputs.name}`))] },
            // Tags given to CreateTable are authorised as dynamodb:TagResource.
            { action: "dynamodb:TagResource", op: "create", targets: (r, w) => [fresh(regional(w, "dynamodb", `table/${r.inputs.name}`))] },
            // DynamoDB creates a grant on the customer managed key, in the caller's name.
            ...["kms:DescribeKey", "kms:CreateGrant"].map(
                (action): ProviderCall => ({
                    action,
                    op: "create",
                    targets: (r, w) => [existing(keyArn(w, r.inputs.serverSideEncryption.kmsKeyArn))],
                    context: (_r, w) => ({ "kms:ViaService": `dynamodb.${w.region}.amazonaws.com`, "kms:GrantIsForAWSResource": "true" }),
                    when: (r) => typeof r.inputs.serverSideEncryption?.kmsKeyArn === "string",
                }),
            ),
            { action: "dynamodb:UpdateContinuousBackups", op: "create", targets: (r, w) => [existing(regional(w, "dynamodb", `table/${r.inputs.name}`))] },
            { action: "dynamodb:UpdateTimeToLive", op: "create", targets: (r, w) => [existing(regional(w, "dynamodb", `table/${r.inputs.name}`))] },
            ...["dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups", "dynamodb:DescribeTimeToLive", "dynamodb:ListTagsOfResource"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(regional(w, "dynamodb", `table/${r.inputs.name}`))] }),
            ),
            ...["dynamodb:UpdateTable", "dynamodb:UpdateContinuousBackups", "dynamodb:UpdateTimeToLive", "dynamodb:TagResource", "dynamodb:UntagResource"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(regional(w, "dynamodb", `table/${r.inputs.name}`))] }),
            ),
            { action: "dynamodb:DeleteTable", op: "delete", targets: (r, w) => [existing(regional(w, "dynamodb", `table/${r.inputs.name}`))] },
        ],
    },
    "aws:secretsmanager/secret:Secret": {
        source: [`${TF}/secretsmanager/secret.go`, `${SAR}/list_awssecretsmanager.html`],
        calls: [
            { action: "secretsmanager:CreateSecret", op: "create", targets: (r) => [fresh(r.state.arn)] },
            // Tags given to CreateSecret are authorised as secretsmanager:TagResource.
            { action: "secretsmanager:TagResource", op: "create", targets: (r) => [fresh(r.state.arn)] },
            { action: "secretsmanager:DescribeSecret", op: "read", targets: (r) => [existing(r.state.arn)] },
            { action: "secretsmanager:GetResourcePolicy", op: "read", targets: (r) => [existing(r.state.arn)] },
            ...["secretsmanager:UpdateSecret", "secretsmanager:TagResource", "secretsmanager:UntagResource"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r) => [existing(r.state.arn)] }),
            ),
            { action: "secretsmanager:DeleteSecret", op: "delete", targets: (r) => [existing(r.state.arn)] },
        ],
    },
    "aws:kinesis/stream:Stream": {
        source: [`${TF}/kinesis/stream.go`, `${SAR}/list_amazonkinesis.html`],
        calls: [
            { action: "kinesis:CreateStream", op: "create", targets: (r, w) => [fresh(regional(w, "kinesis", `stream/${r.inputs.name}`))] },
            { action: "kinesis:AddTagsToStream", op: "create", targets: (r, w) => [existing(regional(w, "kinesis", `stream/${r.inputs.name}`))] },
            // Encryption is turned on after creation; Kinesis authorises it on the stream and on the key.
            {
                action: "kinesis:StartStreamEncryption",
                op: "create",
                targets: (r, w) => [existing(regional(w, "kinesis", `stream/${r.inputs.name}`)), existing(keyArn(w, r.inputs.kmsKeyId))],
                when: (r) => r.inputs.encryptionType === "KMS",
            },
            {
                action: "kinesis:IncreaseStreamRetentionPeriod",
                op: "create",
                targets: (r, w) => [existing(regional(w, "kinesis", `stream/${r.inputs.name}`))],
                when: (r) => Number(r.inputs.retentionPeriod) > 24,
            },
            ...["kinesis:DescribeStreamSummary", "kinesis:DescribeStream", "kinesis:ListTagsForStream"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(regional(w, "kinesis", `stream/${r.inputs.name}`))] }),
            ),
            ...[
                "kinesis:IncreaseStreamRetentionPeriod",
                "kinesis:DecreaseStreamRetentionPeriod",
                "kinesis:AddTagsToStream",
                "kinesis:RemoveTagsFromStream",
            ].map((action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(regional(w, "kinesis", `stream/${r.inputs.name}`))] })),
            // Changing the shard count or the mode when the environment file does; neither can be
            // scoped to a stream, so preview stacks (on demand, never changed in mode) do without.
            { action: "kinesis:UpdateShardCount", op: "update", targets: anything, when: (r) => r.inputs.streamModeDetails?.streamMode === "PROVISIONED", classes: ["dev", "prod"] },
            { action: "kinesis:UpdateStreamMode", op: "update", targets: anything, classes: ["dev", "prod"] },
            { action: "kinesis:DeleteStream", op: "delete", targets: (r, w) => [existing(regional(w, "kinesis", `stream/${r.inputs.name}`))] },
        ],
    },
    "aws:sqs/queue:Queue": {
        source: [`${TF}/sqs/queue.go`, `${SAR}/list_amazonsqs.html`],
        calls: [
            { action: "sqs:CreateQueue", op: "create", targets: (r, w) => [fresh(regional(w, "sqs", r.inputs.name))] },
            // Tags given to CreateQueue are authorised as sqs:TagQueue.
            { action: "sqs:TagQueue", op: "create", targets: (r, w) => [fresh(regional(w, "sqs", r.inputs.name))] },
            ...["sqs:GetQueueAttributes", "sqs:ListQueueTags"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(regional(w, "sqs", r.inputs.name))] }),
            ),
            ...["sqs:SetQueueAttributes", "sqs:TagQueue", "sqs:UntagQueue"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(regional(w, "sqs", r.inputs.name))] }),
            ),
            { action: "sqs:DeleteQueue", op: "delete", targets: (r, w) => [existing(regional(w, "sqs", r.inputs.name))] },
        ],
    },
    "aws:sqs/queuePolicy:QueuePolicy": {
        source: [`${TF}/sqs/queue_policy.go`, `${SAR}/list_amazonsqs.html`],
        calls: (["create", "update", "delete"] as Op[])
            .map((op): ProviderCall => ({ action: "sqs:SetQueueAttributes", op, targets: (r, w) => [existing(queueArnOfUrl(w, r.inputs.queueUrl))] }))
            .concat([{ action: "sqs:GetQueueAttributes", op: "read", targets: (r, w) => [existing(queueArnOfUrl(w, r.inputs.queueUrl))] }]),
    },
    "aws:sns/topic:Topic": {
        source: [`${TF}/sns/topic.go`, `${SAR}/list_amazonsns.html`],
        calls: [
            { action: "sns:CreateTopic", op: "create", targets: (r, w) => [fresh(regional(w, "sns", r.inputs.name))] },
            // Tags given to CreateTopic are authorised as sns:TagResource.
            { action: "sns:TagResource", op: "create", targets: (r, w) => [fresh(regional(w, "sns", r.inputs.name))] },
            ...["sns:GetTopicAttributes", "sns:ListTagsForResource"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(regional(w, "sns", r.inputs.name))] }),
            ),
            ...["sns:SetTopicAttributes", "sns:TagResource", "sns:UntagResource"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(regional(w, "sns", r.inputs.name))] }),
            ),
            { action: "sns:DeleteTopic", op: "delete", targets: (r, w) => [existing(regional(w, "sns", r.inputs.name))] },
        ],
    },
    "aws:sns/topicPolicy:TopicPolicy": {
        source: [`${TF}/sns/topic_policy.go`, `${SAR}/list_amazonsns.html`],
        calls: (["create", "update", "delete"] as Op[])
            .map((op): ProviderCall => ({ action: "sns:SetTopicAttributes", op, targets: (r) => [existing(r.inputs.arn)] }))
            .concat([{ action: "sns:GetTopicAttributes", op: "read", targets: (r) => [existing(r.inputs.arn)] }]),
    },
    "aws:sns/topicSubscription:TopicSubscription": {
        source: [`${TF}/sns/topic_subscription.go`, `${SAR}/list_amazonsns.html`],
        calls: [
            // The reference authorises the subscription actions on the subscription's topic.
            { action: "sns:Subscribe", op: "create", targets: (r) => [existing(r.inputs.topic)] },
            { action: "sns:GetSubscriptionAttributes", op: "read", targets: (r) => [existing(r.inputs.topic)] },
            { action: "sns:SetSubscriptionAttributes", op: "update", targets: (r) => [existing(r.inputs.topic)] },
            { action: "sns:Unsubscribe", op: "delete", targets: (r) => [existing(r.inputs.topic)] },
        ],
    },
    "aws:cloudwatch/logGroup:LogGroup": {
        source: [`${TF}/logs/group.go`, `${SAR}/list_amazoncloudwatchlogs.html`],
        calls: [
            { action: "logs:CreateLogGroup", op: "create", targets: (r, w) => [fresh(regional(w, "logs", `log-group:${r.inputs.name}`))] },
            // Tags given to CreateLogGroup are authorised as logs:TagResource.
            { action: "logs:TagResource", op: "create", targets: (r, w) => [fresh(regional(w, "logs", `log-group:${r.inputs.name}`))] },
            { action: "logs:PutRetentionPolicy", op: "create", targets: (r, w) => [existing(regional(w, "logs", `log-group:${r.inputs.name}`))] },
            { action: "logs:DescribeLogGroups", op: "read", targets: anything },
            { action: "logs:ListTagsForResource", op: "read", targets: (r, w) => [existing(regional(w, "logs", `log-group:${r.inputs.name}`))] },
            ...["logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy", "logs:AssociateKmsKey", "logs:DisassociateKmsKey", "logs:TagResource", "logs:UntagResource"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(regional(w, "logs", `log-group:${r.inputs.name}`))] }),
            ),
            { action: "logs:DeleteLogGroup", op: "delete", targets: (r, w) => [existing(regional(w, "logs", `log-group:${r.inputs.name}`))] },
        ],
    },
    "aws:iam/role:Role": {
        source: [`${TF}/iam/role.go`, `${SAR}/list_awsidentityandaccessmanagementiam.html`],
        calls: [
            {
                action: "iam:CreateRole",
                op: "create",
                targets: (r, w) => [fresh(roleArn(w, r.inputs.name))],
                // The request names the boundary the program gives the role (none if it gives none).
                context: (r): Record<string, string> =>
                    typeof r.inputs.permissionsBoundary === "string" ? { "iam:PermissionsBoundary": r.inputs.permissionsBoundary } : {},
            },
            // Tags given to CreateRole are authorised as iam:TagRole.
            { action: "iam:TagRole", op: "create", targets: (r, w) => [fresh(roleArn(w, r.inputs.name))] },
            ...["iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(roleArn(w, r.inputs.name))] }),
            ),
            ...["iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy", "iam:PutRolePermissionsBoundary"].map(
                (action): ProviderCall => ({
                    action,
                    op: "update",
                    targets: (r, w) => [existing(roleArn(w, r.inputs.name))],
                    context: (r, w) => boundaryOfRole(w, r.inputs.name),
                }),
            ),
            ...["iam:TagRole", "iam:UntagRole"].map((action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(roleArn(w, r.inputs.name))] })),
            // resourceRoleDelete: instance profiles and policies first, then the role.
            ...["iam:ListInstanceProfilesForRole", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies"].map(
                (action): ProviderCall => ({ action, op: "delete", targets: (r, w) => [existing(roleArn(w, r.inputs.name))] }),
            ),
            { action: "iam:DeleteRole", op: "delete", targets: (r, w) => [existing(roleArn(w, r.inputs.name))], context: (r, w) => boundaryOfRole(w, r.inputs.name) },
        ],
    },
    "aws:iam/rolePolicy:RolePolicy": {
        source: [`${TF}/iam/role_policy.go`, `${SAR}/list_awsidentityandaccessmanagementiam.html`],
        calls: [
            ...(["create", "update"] as Op[]).map(
                (op): ProviderCall => ({
                    action: "iam:PutRolePolicy",
                    op,
                    targets: (r, w) => [existing(roleArn(w, r.inputs.role))],
                    context: (r, w) => boundaryOfRole(w, r.inputs.role),
                }),
            ),
            { action: "iam:GetRolePolicy", op: "read", targets: (r, w) => [existing(roleArn(w, r.inputs.role))] },
            {
                action: "iam:DeleteRolePolicy",
                op: "delete",
                targets: (r, w) => [existing(roleArn(w, r.inputs.role))],
                context: (r, w) => boundaryOfRole(w, r.inputs.role),
            },
        ],
    },
    "aws:lambda/function:Function": {
        source: [`${TF}/lambda/function.go`, `${SAR}/list_awslambda.html`, "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html"],
        calls: [
            { action: "lambda:CreateFunction", op: "create", targets: (r, w) => [fresh(functionArn(w, r.inputs.name))] },
            // Tags given to CreateFunction are authorised as lambda:TagResource.
            { action: "lambda:TagResource", op: "create", targets: (r, w) => [fresh(functionArn(w, r.inputs.name))] },
            ...(["create", "update"] as Op[]).map(
                (op): ProviderCall => ({
                    action: "iam:PassRole",
                    op,
                    targets: (r) => [existing(r.inputs.role)],
                    context: () => ({ "iam:PassedToService": "lambda.amazonaws.com" }),
                }),
            ),
            {
                action: "lambda:PutFunctionConcurrency",
                op: "create",
                targets: (r, w) => [existing(functionArn(w, r.inputs.name))],
                when: (r) => typeof r.inputs.reservedConcurrentExecutions === "number",
            },
            // Lambda checks that whoever attaches a function to a VPC may describe its network.
            ...["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"].flatMap((action) =>
                (["create", "update"] as Op[]).map((op): ProviderCall => ({ action, op, targets: anything, when: (r) => r.inputs.vpcConfig !== undefined })),
            ),
            // Deleting a VPC function waits for its network interfaces.
            { action: "ec2:DescribeNetworkInterfaces", op: "delete", targets: anything, when: (r) => r.inputs.vpcConfig !== undefined },
            ...["lambda:GetFunction", "lambda:GetFunctionCodeSigningConfig", "lambda:ListVersionsByFunction"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(functionArn(w, r.inputs.name))] }),
            ),
            ...[
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:PutFunctionConcurrency",
                "lambda:DeleteFunctionConcurrency",
                "lambda:TagResource",
                "lambda:UntagResource",
            ].map((action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(functionArn(w, r.inputs.name))] })),
            { action: "lambda:DeleteFunction", op: "delete", targets: (r, w) => [existing(functionArn(w, r.inputs.name))] },
        ],
    },
    "aws:lambda/eventSourceMapping:EventSourceMapping": {
        source: [`${TF}/lambda/event_source_mapping.go`, `${SAR}/list_awslambda.html`],
        calls: [
            {
                action: "lambda:CreateEventSourceMapping",
                op: "create",
                targets: () => [fresh("*")],
                context: (r, w) => ({ "lambda:FunctionArn": functionArn(w, r.inputs.functionName) }),
            },
            // Tags given to CreateEventSourceMapping are authorised as lambda:TagResource.
            { action: "lambda:TagResource", op: "create", targets: (_r, w) => [fresh(regional(w, "lambda", `event-source-mapping:${MAPPING_ID}`))] },
            ...[
                ["lambda:GetEventSourceMapping", "read"],
                ["lambda:ListTags", "read"],
                ["lambda:UpdateEventSourceMapping", "update"],
                ["lambda:TagResource", "update"],
                ["lambda:UntagResource", "update"],
                ["lambda:DeleteEventSourceMapping", "delete"],
            ].map(
                ([action, op]): ProviderCall => ({
                    action: action as string,
                    op: op as Op,
                    targets: (_r, w) => [existing(regional(w, "lambda", `event-source-mapping:${MAPPING_ID}`))],
                    context: (r, w) => ({ "lambda:FunctionArn": functionArn(w, r.inputs.functionName) }),
                }),
            ),
        ],
    },
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": {
        source: [`${TF}/lambda/function_event_invoke_config.go`, `${SAR}/list_awslambda.html`],
        calls: [
            ["lambda:PutFunctionEventInvokeConfig", "create"],
            ["lambda:GetFunctionEventInvokeConfig", "read"],
            ["lambda:PutFunctionEventInvokeConfig", "update"],
            ["lambda:DeleteFunctionEventInvokeConfig", "delete"],
        ].map(([action, op]): ProviderCall => ({ action: action as string, op: op as Op, targets: (r, w) => [existing(functionArn(w, r.inputs.functionName))] })),
    },
    "aws:lambda/permission:Permission": {
        source: [`${TF}/lambda/permission.go`, `${SAR}/list_awslambda.html`],
        calls: [
            ["lambda:AddPermission", "create"],
            ["lambda:GetPolicy", "read"],
            ["lambda:RemovePermission", "delete"],
        ].map(([action, op]): ProviderCall => ({ action: action as string, op: op as Op, targets: (r, w) => [existing(functionArn(w, r.inputs.function))] })),
    },
    "aws:cloudwatch/eventRule:EventRule": {
        source: [`${TF}/events/rule.go`, `${SAR}/list_amazoneventbridge.html`],
        calls: [
            { action: "events:PutRule", op: "create", targets: (r, w) => [fresh(regional(w, "events", `rule/${r.inputs.name}`))] },
            // Tags given to PutRule need events:TagResource as well.
            { action: "events:TagResource", op: "create", targets: (r, w) => [fresh(regional(w, "events", `rule/${r.inputs.name}`))] },
            ...[
                ["events:DescribeRule", "read"],
                ["events:ListTagsForResource", "read"],
                ["events:PutRule", "update"],
                ["events:TagResource", "update"],
                ["events:UntagResource", "update"],
                ["events:DeleteRule", "delete"],
            ].map(
                ([action, op]): ProviderCall => ({
                    action: action as string,
                    op: op as Op,
                    targets: (r, w) => [existing(regional(w, "events", `rule/${r.inputs.name}`))],
                }),
            ),
        ],
    },
    "aws:cloudwatch/eventTarget:EventTarget": {
        source: [`${TF}/events/target.go`, `${SAR}/list_amazoneventbridge.html`],
        // Authorised on the target's rule (on the default event bus); PutTargets names the target's
        // ARN. A Lambda target takes no role: EventBridge invokes the function through the
        // function's resource policy.
        calls: [
            ["events:PutTargets", "create"],
            ["events:ListTargetsByRule", "read"],
            ["events:PutTargets", "update"],
            ["events:RemoveTargets", "delete"],
        ].map(
            ([action, op]): ProviderCall => ({
                action: action as string,
                op: op as Op,
                targets: (r, w) => [existing(regional(w, "events", `rule/${r.inputs.rule}`))],
                ...(action === "events:PutTargets" ? { context: (r: ProgramResource) => ({ "events:TargetArn": [String(r.inputs.arn)] }) } : {}),
            }),
        ),
    },
    "aws:cloudwatch/metricAlarm:MetricAlarm": {
        source: [`${TF}/cloudwatch/metric_alarm.go`, `${SAR}/list_amazoncloudwatch.html`],
        calls: [
            { action: "cloudwatch:PutMetricAlarm", op: "create", targets: (r, w) => [fresh(regional(w, "cloudwatch", `alarm:${r.inputs.name}`))] },
            // Tags given to PutMetricAlarm are authorised as cloudwatch:TagResource.
            { action: "cloudwatch:TagResource", op: "create", targets: (r, w) => [fresh(regional(w, "cloudwatch", `alarm:${r.inputs.name}`))] },
            ...[
                ["cloudwatch:DescribeAlarms", "read"],
                ["cloudwatch:ListTagsForResource", "read"],
                ["cloudwatch:PutMetricAlarm", "update"],
                ["cloudwatch:TagResource", "update"],
                ["cloudwatch:UntagResource", "update"],
                ["cloudwatch:DeleteAlarms", "delete"],
            ].map(
                ([action, op]): ProviderCall => ({
                    action: action as string,
                    op: op as Op,
                    targets: (r, w) => [existing(regional(w, "cloudwatch", `alarm:${r.inputs.name}`))],
                }),
            ),
        ],
    },
    "aws:cloudwatch/dashboard:Dashboard": {
        source: [`${TF}/cloudwatch/dashboard.go`, `${SAR}/list_amazoncloudwatch.html`],
        calls: [
            ["cloudwatch:PutDashboard", "create"],
            ["cloudwatch:GetDashboard", "read"],
            ["cloudwatch:PutDashboard", "update"],
            ["cloudwatch:DeleteDashboards", "delete"],
        ].map(
            ([action, op]): ProviderCall => ({
                action: action as string,
                op: op as Op,
                // Dashboards are global: no region in their ARN.
                targets: (r, w) => [existing(`arn:${w.partition}:cloudwatch::${w.accountId}:dashboard/${r.inputs.dashboardName}`)],
            }),
        ),
    },
    "aws:glue/catalogDatabase:CatalogDatabase": {
        source: [`${TF}/glue/catalog_database.go`, `${SAR}/list_awsglue.html`],
        calls: [
            ...[
                ["glue:CreateDatabase", "create"],
                ["glue:GetDatabase", "read"],
                ["glue:UpdateDatabase", "update"],
            ].map(
                ([action, op]): ProviderCall => ({
                    action: action as string,
                    op: op as Op,
                    // Glue authorises on the account's catalog and on the database.
                    targets: (r, w) => [existing(regional(w, "glue", "catalog")), existing(regional(w, "glue", `database/${r.inputs.name}`))],
                }),
            ),
            // Tags given to CreateDatabase are authorised as glue:TagResource, on the database alone.
            ...[
                ["glue:TagResource", "create"],
                ["glue:GetTags", "read"],
                ["glue:TagResource", "update"],
                ["glue:UntagResource", "update"],
            ].map(
                ([action, op]): ProviderCall => ({
                    action: action as string,
                    op: op as Op,
                    targets: (r, w) => [existing(regional(w, "glue", `database/${r.inputs.name}`))],
                }),
            ),
            {
                // Deleting a database is authorised on its tables and functions too.
                action: "glue:DeleteDatabase",
                op: "delete",
                targets: (r, w) => [
                    existing(regional(w, "glue", "catalog")),
                    existing(regional(w, "glue", `database/${r.inputs.name}`)),
                    existing(regional(w, "glue", `table/${r.inputs.name}/events`)),
                    existing(regional(w, "glue", `userDefinedFunction/${r.inputs.name}/any`)),
                ],
            },
        ],
    },
    "aws:glue/catalogTable:CatalogTable": {
        source: [`${TF}/glue/catalog_table.go`, `${SAR}/list_awsglue.html`],
        calls: [
            ["glue:CreateTable", "create"],
            ["glue:GetTable", "read"],
            ["glue:GetPartitionIndexes", "read"],
            ["glue:UpdateTable", "update"],
            ["glue:DeleteTable", "delete"],
        ].map(
            ([action, op]): ProviderCall => ({
                action: action as string,
                op: op as Op,
                targets: (r, w) => [
                    existing(regional(w, "glue", "catalog")),
                    existing(regional(w, "glue", `database/${r.inputs.databaseName}`)),
                    existing(regional(w, "glue", `table/${r.inputs.databaseName}/${r.inputs.name}`)),
                ],
            }),
        ),
    },
    "aws:cloudtrail/trail:Trail": {
        source: [`${TF}/cloudtrail/trail.go`, `${SAR}/list_awscloudtrail.html`],
        calls: [
            { action: "cloudtrail:CreateTrail", op: "create", targets: (r, w) => [fresh(regional(w, "cloudtrail", `trail/${r.inputs.name}`))] },
            // Tags given to CreateTrail are authorised as cloudtrail:AddTags.
            { action: "cloudtrail:AddTags", op: "create", targets: (r, w) => [fresh(regional(w, "cloudtrail", `trail/${r.inputs.name}`))] },
            ...["cloudtrail:PutEventSelectors", "cloudtrail:StartLogging"].map(
                (action): ProviderCall => ({ action, op: "create", targets: (r, w) => [existing(regional(w, "cloudtrail", `trail/${r.inputs.name}`))] }),
            ),
            { action: "cloudtrail:DescribeTrails", op: "read", targets: anything },
            ...["cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors", "cloudtrail:GetInsightSelectors", "cloudtrail:ListTags"].map(
                (action): ProviderCall => ({ action, op: "read", targets: (r, w) => [existing(regional(w, "cloudtrail", `trail/${r.inputs.name}`))] }),
            ),
            ...["cloudtrail:UpdateTrail", "cloudtrail:PutEventSelectors", "cloudtrail:AddTags", "cloudtrail:RemoveTags", "cloudtrail:StartLogging", "cloudtrail:StopLogging"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(regional(w, "cloudtrail", `trail/${r.inputs.name}`))] }),
            ),
            { action: "cloudtrail:DeleteTrail", op: "delete", targets: (r, w) => [existing(regional(w, "cloudtrail", `trail/${r.inputs.name}`))] },
        ],
    },
    "aws:ec2/vpc:Vpc": {
        source: [`${TF}/ec2/vpc_.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            { action: "ec2:CreateVpc", op: "create", targets: (r, w) => [fresh(ec2Arn(w, "vpc", ec2Id(r)))] },
            tagOnCreate("vpc", "CreateVpc"),
            { action: "ec2:ModifyVpcAttribute", op: "create", targets: (r, w) => [existing(ec2Arn(w, "vpc", ec2Id(r)))] },
            // resourceVPCRead: the VPC, its attributes, its default network ACL, route table and security group.
            describe("ec2:DescribeVpcs"),
            { action: "ec2:DescribeVpcAttribute", op: "read", targets: (r, w) => [existing(ec2Arn(w, "vpc", ec2Id(r)))] },
            describe("ec2:DescribeNetworkAcls"),
            describe("ec2:DescribeRouteTables"),
            describe("ec2:DescribeSecurityGroups"),
            { action: "ec2:ModifyVpcAttribute", op: "update", targets: (r, w) => [existing(ec2Arn(w, "vpc", ec2Id(r)))] },
            ...retag("vpc"),
            { action: "ec2:DeleteVpc", op: "delete", targets: (r, w) => [existing(ec2Arn(w, "vpc", ec2Id(r)))] },
        ],
    },
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": {
        source: [`${TF}/ec2/vpc_default_security_group.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            describe("ec2:DescribeSecurityGroups"),
            {
                // The default group exists untagged; the provider tags it before it empties it.
                action: "ec2:CreateTags",
                op: "create",
                targets: (r, w) => [fresh(ec2Arn(w, "security-group", ec2Id(r)))],
            },
            ...["ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"].flatMap((action) =>
                (["create", "update"] as Op[]).map((op): ProviderCall => ({ action, op, targets: (r, w) => [existing(ec2Arn(w, "security-group", ec2Id(r)))] })),
            ),
            ...retag("security-group"),
        ],
    },
    "aws:ec2/routeTable:RouteTable": {
        source: [`${TF}/ec2/vpc_route_table.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            { action: "ec2:CreateRouteTable", op: "create", targets: (r, w) => [fresh(ec2Arn(w, "route-table", ec2Id(r))), existing(vpcOf(w, r))] },
            tagOnCreate("route-table", "CreateRouteTable"),
            describe("ec2:DescribeRouteTables"),
            ...retag("route-table"),
            { action: "ec2:DeleteRouteTable", op: "delete", targets: (r, w) => [existing(ec2Arn(w, "route-table", ec2Id(r)))] },
        ],
    },
    "aws:ec2/routeTableAssociation:RouteTableAssociation": {
        source: [`${TF}/ec2/vpc_route_table_association.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            ...(["create", "update"] as Op[]).map(
                (op): ProviderCall => ({
                    action: op === "create" ? "ec2:AssociateRouteTable" : "ec2:ReplaceRouteTableAssociation",
                    op,
                    targets: (r, w) => [existing(ec2Arn(w, "route-table", String(r.inputs.routeTableId))), existing(ec2Arn(w, "subnet", String(r.inputs.subnetId)))],
                }),
            ),
            describe("ec2:DescribeRouteTables"),
            {
                action: "ec2:DisassociateRouteTable",
                op: "delete",
                targets: (r, w) => [existing(ec2Arn(w, "route-table", String(r.inputs.routeTableId))), existing(ec2Arn(w, "subnet", String(r.inputs.subnetId)))],
            },
        ],
    },
    "aws:ec2/subnet:Subnet": {
        source: [`${TF}/ec2/vpc_subnet.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            // The program places its subnets in the region's zones (aws.getAvailabilityZones).
            describe("ec2:DescribeAvailabilityZones"),
            { action: "ec2:CreateSubnet", op: "create", targets: (r, w) => [fresh(ec2Arn(w, "subnet", ec2Id(r))), existing(vpcOf(w, r))] },
            tagOnCreate("subnet", "CreateSubnet"),
            describe("ec2:DescribeSubnets"),
            { action: "ec2:ModifySubnetAttribute", op: "update", targets: (r, w) => [existing(ec2Arn(w, "subnet", ec2Id(r)))] },
            ...retag("subnet"),
            // Deleting a subnet waits for the network interfaces Lambda leaves behind.
            { action: "ec2:DescribeNetworkInterfaces", op: "delete", targets: anything },
            { action: "ec2:DeleteSubnet", op: "delete", targets: (r, w) => [existing(ec2Arn(w, "subnet", ec2Id(r)))] },
        ],
    },
    "aws:ec2/securityGroup:SecurityGroup": {
        source: [`${TF}/ec2/vpc_security_group.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            { action: "ec2:CreateSecurityGroup", op: "create", targets: (r, w) => [fresh(ec2Arn(w, "security-group", ec2Id(r))), existing(vpcOf(w, r))] },
            tagOnCreate("security-group", "CreateSecurityGroup"),
            // A new group allows all egress: the provider revokes it, then authorises the declared rules.
            { action: "ec2:RevokeSecurityGroupEgress", op: "create", targets: (r, w) => [existing(ec2Arn(w, "security-group", ec2Id(r)))] },
            ...["ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress"].flatMap((action) =>
                (["create", "update"] as Op[]).map(
                    (op): ProviderCall => ({
                        action,
                        op,
                        targets: (r, w) => [existing(ec2Arn(w, "security-group", ec2Id(r))), fresh(ec2Arn(w, "security-group-rule", "sgr-0123456789abcdef0"))],
                    }),
                ),
            ),
            describe("ec2:DescribeSecurityGroups"),
            describe("ec2:DescribeSecurityGroupRules"),
            ...["ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"].map(
                (action): ProviderCall => ({ action, op: "update", targets: (r, w) => [existing(ec2Arn(w, "security-group", ec2Id(r)))] }),
            ),
            ...retag("security-group"),
            { action: "ec2:DescribeNetworkInterfaces", op: "delete", targets: anything },
            { action: "ec2:DeleteSecurityGroup", op: "delete", targets: (r, w) => [existing(ec2Arn(w, "security-group", ec2Id(r)))] },
        ],
    },
    "aws:ec2/vpcEndpoint:VpcEndpoint": {
        source: [`${TF}/ec2/vpc_endpoint.go`, `${SAR}/list_amazonec2.html`],
        calls: [
            {
                action: "ec2:CreateVpcEndpoint",
                op: "create",
                // Authorised on the new endpoint and on the VPC, subnets, security groups and route tables it uses.
                targets: (r, w) => {
                    const byId = (type: string, ids: unknown) => [ids ?? []].flat().map((id) => existing(ec2Arn(w, type, String(id))));
                    return [
                        fresh(ec2Arn(w, "vpc-endpoint", `vpce-${r.name}`)),
                        existing(vpcOf(w, r)),
                        ...byId("subnet", r.inputs.subnetIds),
                        ...byId("security-group", r.inputs.securityGroupIds),
                        ...byId("route-table", r.inputs.routeTableIds),
                    ];
                },
            },
            tagOnCreate("vpc-endpoint", "CreateVpcEndpoint"),
            describe("ec2:DescribeVpcEndpoints"),
            describe("ec2:DescribePrefixLists"),
            { action: "ec2:ModifyVpcEndpoint", op: "update", targets: (r, w) => [existing(ec2Arn(w, "vpc-endpoint", `vpce-${r.name}`))] },
            ...retag("vpc-endpoint"),
            { action: "ec2:DeleteVpcEndpoints", op: "delete", targets: (r, w) => [existing(ec2Arn(w, "vpc-endpoint", `vpce-${r.name}`))] },
        ],
    },
};

