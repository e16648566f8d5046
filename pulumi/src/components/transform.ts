import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Artifact } from "../artifacts";
import { deadLetterQueuePolicy, servicePrincipal, type Context } from "../iam";
import { PROCESSED_PREFIX, RAW_PREFIX } from "../names";
import type { ExpressedSettings } from "../settings";
import { DLQ_RETENTION_SECONDS } from "./ingest";
import { pipelineFunction, type FunctionNetwork } from "./pipelineFunction";
import type { Storage } from "./storage";

export interface TransformArgs {
    ctx: Context;
    settings: ExpressedSettings;
    storage: Storage;
    artifact: Artifact;
    network?: FunctionNetwork;
}

/**
 * Raw object → transformer → Parquet: the function with its role and log group, the raw bucket's
 * ObjectCreated notification on `raw/`, the invoke permission scoped to that bucket and account,
 * and the asynchronous invoke settings whose failures land in the transform dead letter queue.
 */
export class Transform extends pulumi.ComponentResource {
    readonly dlq: aws.sqs.Queue;
    readonly fn: aws.lambda.Function;
    readonly role: aws.iam.Role;
    readonly logGroup: aws.cloudwatch.LogGroup;
    readonly permission: aws.lambda.Permission;
    readonly notification: aws.s3.BucketNotification;
    readonly invokeConfig: aws.lambda.FunctionEventInvokeConfig;

    constructor(name: string, args: TransformArgs, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Transform", name, {}, opts);
        const { ctx, settings, storage } = args;
        const { env, names, extra } = ctx;

        this.dlq = new aws.sqs.Queue(
            `${name}-dlq`,
            {
                name: names.transform_dlq,
                kmsMasterKeyId: storage.key.arn,
                kmsDataKeyReusePeriodSeconds: 300,
                messageRetentionSeconds: DLQ_RETENTION_SECONDS,
            },
            { parent: this },
        );

        const created = pipelineFunction(
            `${name}-transformer`,
            {
                ctx,
                functionName: names.transformer,
                roleName: extra.transformerRole,
                logGroupName: extra.transformerLogGroup,
                settings: env.transformer,
                artifact: args.artifact,
                kmsKeyArn: storage.key.arn,
                network: args.network,
                environment: {
                    RAW_BUCKET: names.raw_bucket,
                    PROCESSED_BUCKET: names.processed_bucket,
                    METADATA_TABLE: names.metadata_table,
                    METADATA_TTL_DAYS: String(env.storage.metadata_ttl_days),
                    HMAC_SECRET_ID: names.hmac_secret,
                    PIPELINE_ENV: env.name,
                    RUST_LOG: env.transformer.log_level,
                    // A run cannot outlive the function's timeout: a crashed run's lease on a raw
                    // object expires soon after, before the async retries are used up.
                    LEASE_SECONDS: String(env.transformer.timeout_seconds + 5),
                    // Recorded with every processed object: `cargo xtask replay` re-transforms
                    // only what another artifact produced.
                    TRANSFORM_VERSION: args.artifact.sha256,
                },
                statements: [
                    {
                        Sid: "ReadRawObjects",
                        Effect: "Allow",
                        Action: "s3:GetObject",
                        Resource: pulumi.interpolate`${storage.raw.arn}/${RAW_PREFIX}*`,
                    },
                    {
                        // Lets S3 answer 404 rather than 403 for a raw object that is gone.
                        Sid: "ListRawPrefix",
                        Effect: "Allow",
                        Action: "s3:ListBucket",
                        Resource: storage.raw.arn,
                        Condition: { StringLike: { "s3:prefix": `${RAW_PREFIX}*` } },
                    },
                    {
                        // Whole-object PUTs (no multipart upload), and the deletion of the outputs
                        // an earlier content of the raw object had and the current one has not.
                        Sid: "WriteProcessedObjects",
                        Effect: "Allow",
                        Action: ["s3:PutObject", "s3:DeleteObject"],
                        Resource: pulumi.interpolate`${storage.processed.arn}/${PROCESSED_PREFIX}*`,
                    },
                    {
                        // The outputs of an overlapping raw object of the same shard: the records
                        // it emitted are the ones this object does not (the owner rule in
                        // docs/data-contract.md), and a stale output loses the rows another
                        // object now emits.
                        Sid: "ReadProcessedObjects",
                        Effect: "Allow",
                        Action: "s3:GetObject",
                        Resource: pulumi.interpolate`${storage.processed.arn}/${PROCESSED_PREFIX}*`,
                    },
                    {
                        // Lets S3 answer 404 rather than 403 for an output that is gone.
                        Sid: "ListProcessedPrefix",
                        Effect: "Allow",
                        Action: "s3:ListBucket",
                        Resource: storage.processed.arn,
                        Condition: { StringLike: { "s3:prefix": `${PROCESSED_PREFIX}*` } },
                    },
                    {
                        // The raw object's item, the pages of its output keys and the shard's
                        // ledger items (items of their own): pages are written with UpdateItem,
                        // read with GetItem, and deleted once the item no longer refers to them;
                        // ledger entries are added with UpdateItem and read with GetItem.
                        Sid: "RecordMetadata",
                        Effect: "Allow",
                        Action: ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                        Resource: storage.table.arn,
                    },
                    {
                        Sid: "ReadHmacKey",
                        Effect: "Allow",
                        Action: "secretsmanager:GetSecretValue",
                        Resource: storage.hmacSecret.arn,
                    },
                    {
                        Sid: "SendFailedEventsToDlq",
                        Effect: "Allow",
                        Action: "sqs:SendMessage",
                        Resource: this.dlq.arn,
                    },
                ],
            },
            this,
        );
        this.fn = created.fn;
        this.role = created.role;
        this.logGroup = created.logGroup;

        const queuePolicy = deadLetterQueuePolicy(name, this.dlq, created.role.arn, "TransformerSendsFailedEvents", this);

        this.invokeConfig = new aws.lambda.FunctionEventInvokeConfig(
            `${name}-async`,
            {
                functionName: this.fn.name,
                maximumRetryAttempts: settings.transformerAsync.maximumRetryAttempts,
                maximumEventAgeInSeconds: settings.transformerAsync.maximumEventAgeInSeconds,
                destinationConfig: { onFailure: { destination: this.dlq.arn } },
            },
            // Lambda checks that the role may send to the destination.
            { parent: this, dependsOn: [created.rolePolicy, queuePolicy] },
        );

        this.permission = new aws.lambda.Permission(
            `${name}-s3-invoke`,
            {
                function: this.fn.name,
                action: "lambda:InvokeFunction",
                principal: servicePrincipal("s3"),
                sourceArn: storage.raw.arn,
                sourceAccount: ctx.accountId,
            },
            { parent: this },
        );

        // The bucket's only notification configuration: new raw objects invoke the transformer.
        // Quarantine objects share the bucket and stay out of the filter.
        this.notification = new aws.s3.BucketNotification(
            `${name}-raw-created`,
            {
                bucket: storage.raw.name,
                lambdaFunctions: [
                    {
                        id: "raw-object-created",
                        lambdaFunctionArn: this.fn.arn,
                        events: settings.notification.events,
                        filterPrefix: settings.notification.prefix,
                    },
                ],
            },
            // S3 tests the destination when the configuration is written.
            { parent: this, dependsOn: [this.permission, this.invokeConfig] },
        );

        this.registerOutputs({ functionName: this.fn.name, dlqUrl: this.dlq.url });
    }
}
