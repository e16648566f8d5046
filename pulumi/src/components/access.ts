import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { arn, policyDocument, type Context, type Statement } from "../iam";
import { PENDING_INDEX, PROCESSED_PREFIX, QUARANTINE_PREFIX, RAW_PREFIX } from "../names";
import type { Ingest } from "./ingest";
import type { Storage } from "./storage";
import type { Transform } from "./transform";

export interface AccessArgs {
    ctx: Context;
    storage: Storage;
    ingest: Ingest;
    transform: Transform;
}

/** The trust of a role that principals of this account assume when their own IAM policies let them. */
function accountAssumeRolePolicy(ctx: Context): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "PrincipalsOfThisAccountAllowedByIam",
                Effect: "Allow",
                Principal: { AWS: arn(ctx, "iam", "root") },
                Action: "sts:AssumeRole",
            },
        ],
    });
}

/**
 * The roles of the tools that act on a stack, so that what they may do is code, reviewed and tested
 * like the functions' roles:
 * - `producer`: what an application needs to send events to the stream (the `producer` command);
 * - `operator`: what an on-call engineer needs to check and heal the stack — `xtask smoke`,
 *   reconciliation, `dlq redrive` and invoking the functions — and nothing that changes data
 *   except deleting a dead letter once it was redriven.
 * Both trust the account: a person or workload is given `sts:AssumeRole` on them by its own policy.
 */
export class Access extends pulumi.ComponentResource {
    readonly producer: aws.iam.Role;
    readonly operator: aws.iam.Role;

    constructor(name: string, args: AccessArgs, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Access", name, {}, opts);
        const { ctx, storage, ingest, transform } = args;
        const { extra } = ctx;
        const parent = { parent: this };

        const role = (logical: string, roleName: string, description: string, statements: Statement[]): aws.iam.Role => {
            const created = new aws.iam.Role(
                `${name}-${logical}`,
                { name: roleName, description, assumeRolePolicy: accountAssumeRolePolicy(ctx), maxSessionDuration: 3600 },
                parent,
            );
            new aws.iam.RolePolicy(
                `${name}-${logical}`,
                { name: `${roleName}-permissions`, role: created.id, policy: policyDocument(statements) },
                parent,
            );
            return created;
        };

        const writeStream: Statement[] = [
            {
                Sid: "PutEvents",
                Effect: "Allow",
                Action: ["kinesis:PutRecord", "kinesis:PutRecords"],
                Resource: ingest.stream.arn,
            },
            {
                // Records of an encrypted stream are encrypted with a data key of the pipeline key.
                Sid: "EncryptEvents",
                Effect: "Allow",
                Action: "kms:GenerateDataKey",
                Resource: storage.key.arn,
                Condition: { StringEquals: { "kms:ViaService": `kinesis.${ctx.region}.${ctx.dnsSuffix}` } },
            },
        ];

        this.producer = role("producer", extra.producerRole, "Sends events to the pipeline's stream", [
            ...writeStream,
            {
                // The producer maps partition keys to shards to aggregate only records bound for one shard.
                Sid: "ListShards",
                Effect: "Allow",
                Action: "kinesis:ListShards",
                Resource: ingest.stream.arn,
            },
        ]);

        const functions = [ingest.fn.arn, transform.fn.arn];
        const dlqs = [ingest.dlq.arn, transform.dlq.arn];
        this.operator = role("operator", extra.operatorRole, "Checks, reconciles and heals the pipeline (smoke, reconcile, redrive)", [
            ...writeStream,
            {
                // Redrive re-reads the sequence range a stream dead letter names.
                Sid: "ReadStream",
                Effect: "Allow",
                Action: ["kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"],
                Resource: ingest.stream.arn,
            },
            {
                Sid: "InvokeFunctions",
                Effect: "Allow",
                Action: "lambda:InvokeFunction",
                Resource: functions,
            },
            {
                Sid: "ListPipelineObjects",
                Effect: "Allow",
                Action: "s3:ListBucket",
                Resource: [storage.raw.arn, storage.processed.arn],
                Condition: { StringLike: { "s3:prefix": [`${RAW_PREFIX}*`, `${QUARANTINE_PREFIX}*`, `${PROCESSED_PREFIX}*`] } },
            },
            {
                Sid: "ReadPipelineObjects",
                Effect: "Allow",
                Action: "s3:GetObject",
                Resource: [
                    pulumi.interpolate`${storage.raw.arn}/${RAW_PREFIX}*`,
                    pulumi.interpolate`${storage.raw.arn}/${QUARANTINE_PREFIX}*`,
                    pulumi.interpolate`${storage.processed.arn}/${PROCESSED_PREFIX}*`,
                ],
            },
            {
                Sid: "ReadMetadata",
                Effect: "Allow",
                Action: ["dynamodb:Scan", "dynamodb:Query", "dynamodb:GetItem"],
                Resource: [storage.table.arn, pulumi.interpolate`${storage.table.arn}/index/${PENDING_INDEX}`],
            },
            {
                Sid: "ReadAndRedriveDeadLetters",
                Effect: "Allow",
                Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                Resource: dlqs,
            },
            {
                Sid: "DecryptPipelineData",
                Effect: "Allow",
                Action: "kms:Decrypt",
                Resource: storage.key.arn,
            },
        ]);

        this.registerOutputs({ producerRoleArn: this.producer.arn, operatorRoleArn: this.operator.arn });
    }
}
