import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Artifact } from "../artifacts";
import { deadLetterQueuePolicy, type Context } from "../iam";
import { QUARANTINE_PREFIX, RAW_PREFIX } from "../names";
import type { ExpressedSettings } from "../settings";
import { pipelineFunction, type FunctionNetwork } from "./pipelineFunction";
import type { Storage } from "./storage";

/** SQS's longest retention: a dead letter waits 14 days for a redrive. */
export const DLQ_RETENTION_SECONDS = 1_209_600;

export interface IngestArgs {
    ctx: Context;
    settings: ExpressedSettings;
    storage: Storage;
    artifact: Artifact;
    network?: FunctionNetwork;
}

/**
 * Kinesis → stream processor: the stream, the function with its role and log group, the
 * event-source mapping and the dead letter queue of batches that exhaust their retries.
 */
export class Ingest extends pulumi.ComponentResource {
    readonly stream: aws.kinesis.Stream;
    readonly dlq: aws.sqs.Queue;
    readonly fn: aws.lambda.Function;
    readonly role: aws.iam.Role;
    readonly logGroup: aws.cloudwatch.LogGroup;
    readonly eventSourceMapping: aws.lambda.EventSourceMapping;

    constructor(name: string, args: IngestArgs, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Ingest", name, {}, opts);
        const { ctx, settings, storage } = args;
        const { env, names, extra } = ctx;
        const provisioned = env.stream.mode === "provisioned";

        this.stream = new aws.kinesis.Stream(
            `${name}-stream`,
            {
                name: names.stream,
                ...(provisioned ? { shardCount: env.stream.shards ?? undefined } : {}),
                streamModeDetails: { streamMode: provisioned ? "PROVISIONED" : "ON_DEMAND" },
                retentionPeriod: env.stream.retention_hours,
                encryptionType: "KMS",
                kmsKeyId: storage.key.arn,
                enforceConsumerDeletion: true,
            },
            { parent: this },
        );

        this.dlq = new aws.sqs.Queue(
            `${name}-dlq`,
            {
                name: names.stream_dlq,
                kmsMasterKeyId: storage.key.arn,
                kmsDataKeyReusePeriodSeconds: 300,
                messageRetentionSeconds: DLQ_RETENTION_SECONDS,
            },
            { parent: this },
        );

        const created = pipelineFunction(
            `${name}-stream-processor`,
            {
                ctx,
                functionName: names.stream_processor,
                roleName: extra.streamProcessorRole,
                logGroupName: extra.streamProcessorLogGroup,
                settings: env.stream_processor,
                artifact: args.artifact,
                kmsKeyArn: storage.key.arn,
                network: args.network,
                environment: {
                    RAW_BUCKET: names.raw_bucket,
                    METADATA_TABLE: names.metadata_table,
                    METADATA_TTL_DAYS: String(env.storage.metadata_ttl_days),
                    PIPELINE_ENV: env.name,
                    RUST_LOG: env.stream_processor.log_level,
                },
                statements: [
                    {
                        Sid: "ReadStream",
                        Effect: "Allow",
                        // What the event-source mapping needs with a standard iterator; no
                        // SubscribeToShard, which only an enhanced fan-out consumer calls.
                        Action: [
                            "kinesis:DescribeStream",
                            "kinesis:DescribeStreamSummary",
                            "kinesis:GetRecords",
                            "kinesis:GetShardIterator",
                            "kinesis:ListShards",
                        ],
                        Resource: this.stream.arn,
                    },
                    {
                        Sid: "WriteRawAndQuarantineObjects",
                        Effect: "Allow",
                        Action: "s3:PutObject",
                        Resource: [
                            pulumi.interpolate`${storage.raw.arn}/${RAW_PREFIX}*`,
                            pulumi.interpolate`${storage.raw.arn}/${QUARANTINE_PREFIX}*`,
                        ],
                    },
                    {
                        // A batch redelivered with fewer records and no rejection clears the
                        // quarantine object an earlier attempt wrote under the same key.
                        Sid: "ClearStaleQuarantineObjects",
                        Effect: "Allow",
                        Action: "s3:DeleteObject",
                        Resource: pulumi.interpolate`${storage.raw.arn}/${QUARANTINE_PREFIX}*`,
                    },
                    {
                        Sid: "RecordMetadata",
                        Effect: "Allow",
                        // One conditional UpdateItem per raw object; it never reads an item.
                        Action: "dynamodb:UpdateItem",
                        Resource: storage.table.arn,
                    },
                    {
                        Sid: "SendFailedBatchesToDlq",
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

        const queuePolicy = deadLetterQueuePolicy(name, this.dlq, created.role.arn, "StreamProcessorSendsFailedBatches", this);

        const esm = settings.eventSourceMapping;
        const timestamp = env.event_source_mapping.starting_position_timestamp;
        this.eventSourceMapping = new aws.lambda.EventSourceMapping(
            `${name}-mapping`,
            {
                functionName: this.fn.arn,
                eventSourceArn: this.stream.arn,
                startingPosition: esm.startingPosition,
                ...(timestamp !== undefined && timestamp !== null
                    ? { startingPositionTimestamp: new Date(timestamp * 1000).toISOString().replace(/\.000Z$/, "Z") }
                    : {}),
                batchSize: esm.batchSize,
                maximumBatchingWindowInSeconds: esm.maximumBatchingWindowInSeconds,
                parallelizationFactor: esm.parallelizationFactor,
                bisectBatchOnFunctionError: esm.bisectBatchOnFunctionError,
                maximumRetryAttempts: esm.maximumRetryAttempts,
                maximumRecordAgeInSeconds: esm.maximumRecordAgeInSeconds,
                functionResponseTypes: esm.functionResponseTypes,
                destinationConfig: { onFailure: { destinationArn: this.dlq.arn } },
            },
            // Lambda checks the role can read the stream and send to the queue when it creates the mapping.
            { parent: this, dependsOn: [created.rolePolicy, queuePolicy] },
        );

        this.registerOutputs({
            streamName: this.stream.name,
            streamArn: this.stream.arn,
            functionName: this.fn.name,
            dlqUrl: this.dlq.url,
        });
    }
}
