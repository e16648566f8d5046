import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { arn, servicePrincipal, type Context, type Statement } from "../iam";
import contract from "../contract.json";
import { PENDING_BUCKETS, PENDING_INDEX, PENDING_VALUES, PROCESSED_PREFIX, QUARANTINE_PREFIX, RAW_PREFIX } from "../names";
import { noncurrentVersionRule, SecureBucket } from "./secureBucket";

/** Attributes of the metadata table that this program declares (keys of the table and its index). */
export const METADATA_HASH_KEY: string = contract.metadata.hashKey;
export const PENDING_ATTRIBUTE: string = contract.metadata.pendingAttribute;
export const RAW_WRITTEN_AT_ATTRIBUTE: string = contract.metadata.writtenAtAttribute;
export const TTL_ATTRIBUTE: string = contract.metadata.ttlAttribute;

/**
 * The metadata table's keys and pending index, as the table below declares them and as the Rust
 * side (`pipeline_core::metadata`, the local provisioner) expresses them: `test/parity.test.ts`
 * compares the two. The index projects its keys only: the stuck-object queries read nothing else,
 * and no update of another attribute (a lease, an output set) writes to the index.
 */
export const METADATA_TABLE = {
    hashKey: METADATA_HASH_KEY,
    ttlAttribute: TTL_ATTRIBUTE,
    pendingIndex: {
        name: PENDING_INDEX,
        hashKey: PENDING_ATTRIBUTE,
        rangeKey: RAW_WRITTEN_AT_ATTRIBUTE,
        projectionType: contract.metadata.pendingIndexProjection,
        buckets: PENDING_BUCKETS,
        values: PENDING_VALUES,
    },
} as const;

/**
 * Everything that holds data: the customer managed KMS key, the raw and processed buckets (and the
 * access log bucket), the metadata table and the PII HMAC secret.
 */
export class Storage extends pulumi.ComponentResource {
    readonly key: aws.kms.Key;
    readonly keyAlias: aws.kms.Alias;
    readonly raw: SecureBucket;
    readonly processed: SecureBucket;
    readonly accessLogs?: SecureBucket;
    readonly table: aws.dynamodb.Table;
    readonly hmacSecret: aws.secretsmanager.Secret;

    constructor(name: string, args: { ctx: Context }, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Storage", name, {}, opts);
        const { ctx } = args;
        const { env, names, extra } = ctx;
        const retain = env.storage.retain_on_delete;
        const retained: pulumi.CustomResourceOptions = { parent: this, retainOnDelete: retain };

        this.key = new aws.kms.Key(
            `${name}-key`,
            {
                description: `${names.stream} pipeline data: stream, buckets, table, queues, topic, secret and logs`,
                enableKeyRotation: true,
                deletionWindowInDays: retain ? 30 : 7,
                policy: JSON.stringify({ Version: "2012-10-17", Statement: keyPolicyStatements(ctx) }),
            },
            retained,
        );
        this.keyAlias = new aws.kms.Alias(`${name}-key`, { name: extra.kmsAlias, targetKeyId: this.key.keyId }, retained);

        if (env.storage.access_logging) {
            this.accessLogs = new SecureBucket(
                `${name}-access-logs`,
                {
                    ctx,
                    bucketName: extra.accessLogBucket,
                    role: "access-logs",
                    // No kmsKeyArn: S3 server access logs can only be delivered to SSE-S3 buckets.
                    lifecycleRules: [
                        {
                            id: "expire-access-logs",
                            status: "Enabled",
                            filter: {},
                            expiration: { days: env.observability.log_retention_days },
                        },
                        noncurrentVersionRule(1),
                    ],
                    extraStatements: (bucketArn) => [
                        {
                            Sid: "AllowS3ServerAccessLogs",
                            Effect: "Allow",
                            Principal: { Service: servicePrincipal("logging.s3") },
                            Action: "s3:PutObject",
                            Resource: pulumi.interpolate`${bucketArn}/*`,
                            Condition: {
                                ArnLike: { "aws:SourceArn": [arn(ctx, "s3", names.raw_bucket), arn(ctx, "s3", names.processed_bucket)] },
                                StringEquals: { "aws:SourceAccount": ctx.accountId },
                            },
                        },
                    ],
                },
                { parent: this },
            );
        }
        const logTo = (bucketName: string) =>
            this.accessLogs ? { targetBucket: this.accessLogs.name, targetPrefix: `${bucketName}/` } : undefined;

        this.raw = new SecureBucket(
            `${name}-raw`,
            {
                ctx,
                bucketName: names.raw_bucket,
                role: "raw",
                kmsKeyArn: this.key.arn,
                lifecycleRules: [
                    {
                        id: "raw-to-intelligent-tiering",
                        status: "Enabled",
                        filter: { prefix: RAW_PREFIX },
                        transitions: [{ days: env.storage.intelligent_tiering_after_days, storageClass: "INTELLIGENT_TIERING" }],
                    },
                    {
                        id: "expire-quarantine",
                        status: "Enabled",
                        filter: { prefix: QUARANTINE_PREFIX },
                        expiration: { days: env.storage.quarantine_expiry_days },
                    },
                    noncurrentVersionRule(env.storage.noncurrent_version_expiry_days),
                ],
                accessLogging: logTo(names.raw_bucket),
            },
            { parent: this },
        );

        this.processed = new SecureBucket(
            `${name}-processed`,
            {
                ctx,
                bucketName: names.processed_bucket,
                role: "processed",
                kmsKeyArn: this.key.arn,
                lifecycleRules: [
                    {
                        id: "processed-to-intelligent-tiering",
                        status: "Enabled",
                        filter: { prefix: PROCESSED_PREFIX },
                        transitions: [{ days: env.storage.intelligent_tiering_after_days, storageClass: "INTELLIGENT_TIERING" }],
                    },
                    noncurrentVersionRule(env.storage.noncurrent_version_expiry_days),
                ],
                accessLogging: logTo(names.processed_bucket),
            },
            { parent: this },
        );

        // One item per raw object, and one per page of its output keys (docs/data-contract.md).
        // `pending` (one of PENDING_BUCKETS values) is set only while the object is not processed,
        // so the `pending-by-age` index holds exactly the unprocessed objects, oldest first in each
        // bucket.
        const index = METADATA_TABLE.pendingIndex;
        this.table = new aws.dynamodb.Table(
            `${name}-metadata`,
            {
                name: names.metadata_table,
                billingMode: "PAY_PER_REQUEST",
                hashKey: METADATA_TABLE.hashKey,
                attributes: [
                    { name: METADATA_TABLE.hashKey, type: "S" },
                    { name: index.hashKey, type: "S" },
                    { name: index.rangeKey, type: "S" },
                ],
                globalSecondaryIndexes: [
                    {
                        name: index.name,
                        keySchemas: [
                            { attributeName: index.hashKey, keyType: "HASH" },
                            { attributeName: index.rangeKey, keyType: "RANGE" },
                        ],
                        projectionType: index.projectionType,
                    },
                ],
                serverSideEncryption: { enabled: true, kmsKeyArn: this.key.arn },
                pointInTimeRecovery: { enabled: true },
                ttl: { attributeName: METADATA_TABLE.ttlAttribute, enabled: true },
                deletionProtectionEnabled: retain,
            },
            retained,
        );

        // Only the secret: its value is never in code or state. The operator seeds it once
        // (docs/deployment.md); the transformer refuses to run with an empty key.
        this.hmacSecret = new aws.secretsmanager.Secret(
            `${name}-hmac-key`,
            {
                name: names.hmac_secret,
                description: `HMAC-SHA256 key that pseudonymises PII in ${names.processed_bucket}; seeded out of band`,
                kmsKeyId: this.key.arn,
                // A preview stack must be re-creatable under the same name right after it is destroyed.
                recoveryWindowInDays: retain ? 30 : 0,
            },
            retained,
        );

        this.registerOutputs({
            keyArn: this.key.arn,
            rawBucket: this.raw.name,
            processedBucket: this.processed.name,
            table: this.table.name,
            hmacSecret: this.hmacSecret.name,
        });
    }
}

/**
 * The key policy. The account statement delegates use of the key to IAM (the functions' roles get
 * kms:Decrypt/GenerateDataKey on this key only); the service statements let CloudWatch Logs encrypt
 * the log groups, CloudWatch alarms publish to the encrypted topic and, when on, CloudTrail
 * encrypt the data-event logs. A key policy's `Resource` is always `*`: it means this key.
 */
export function keyPolicyStatements(ctx: Context): Statement[] {
    const { env } = ctx;
    const p = `${env.project}-${env.name}`;
    const statements: Statement[] = [
        {
            Sid: "AccountAdministersKeyThroughIam",
            Effect: "Allow",
            Principal: { AWS: arn(ctx, "iam", "root") },
            Action: "kms:*",
            Resource: "*",
        },
        {
            Sid: "CloudWatchLogsEncryptsPipelineLogGroups",
            Effect: "Allow",
            Principal: { Service: `logs.${ctx.region}.${ctx.dnsSuffix}` },
            Action: [
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:DescribeKey",
            ],
            Resource: "*",
            Condition: {
                ArnLike: { "kms:EncryptionContext:aws:logs:arn": arn(ctx, "logs", `log-group:/aws/lambda/${p}-*`) },
            },
        },
        {
            Sid: "CloudWatchAlarmsPublishToEncryptedTopic",
            Effect: "Allow",
            Principal: { Service: servicePrincipal("cloudwatch") },
            Action: ["kms:Decrypt", "kms:GenerateDataKey"],
            Resource: "*",
        },
    ];
    if (env.network.cloudtrail) {
        // The documented encrypt and describe statements, each bound to this trail by aws:SourceArn
        // (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html).
        // No kms:Decrypt: it is needed only when the trail bucket has an S3 Bucket Key, and it has
        // none (NO_BUCKET_KEY_BUCKET_ROLES in policy/rules.ts).
        const trailArn = arn(ctx, "cloudtrail", `trail/${ctx.extra.trail}`);
        statements.push(
            {
                Sid: "CloudTrailEncryptsDataEventLogs",
                Effect: "Allow",
                Principal: { Service: servicePrincipal("cloudtrail") },
                Action: "kms:GenerateDataKey",
                Resource: "*",
                Condition: {
                    StringEquals: { "aws:SourceArn": trailArn },
                    StringLike: { "kms:EncryptionContext:aws:cloudtrail:arn": `arn:${ctx.partition}:cloudtrail:*:${ctx.accountId}:trail/*` },
                },
            },
            {
                Sid: "CloudTrailDescribesKey",
                Effect: "Allow",
                Principal: { Service: servicePrincipal("cloudtrail") },
                Action: "kms:DescribeKey",
                Resource: "*",
                Condition: { StringEquals: { "aws:SourceArn": trailArn } },
            },
        );
    }
    return statements;
}
