import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { permissionsBoundaryArn } from "../boundary";
import { arn, policyDocument, type Context, type Statement } from "../iam";
import { PROCESSED_PREFIX, QUARANTINE_PREFIX, RAW_PREFIX } from "../names";
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
 * like the functions' roles, and granted exactly what the tools call (`cargo xtask authz` fails on
 * a grant no recorded request uses):
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
                {
                    name: roleName,
                    description,
                    assumeRolePolicy: accountAssumeRolePolicy(ctx),
                    maxSessionDuration: 3600,
                    // The deployer may create a role only with its class's boundary (pulumi/bootstrap).
                    permissionsBoundary: permissionsBoundaryArn(ctx.env, ctx.accountId, ctx.partition),
                },
                parent,
            );
            new aws.iam.RolePolicy(
                `${name}-${logical}`,
                { name: `${roleName}-permissions`, role: created.id, policy: policyDocument(statements) },
                parent,
            );
            return created;
        };

        // Records of the encrypted stream are encrypted with a data key of the pipeline key.
        const encryptEvents: Statement = {
            Sid: "EncryptEvents",
            Effect: "Allow",
            Action: "kms:GenerateDataKey",
            Resource: storage.key.arn,
            Condition: { StringEquals: { "kms:ViaService": `kinesis.${ctx.region}.${ctx.dnsSuffix}` } },
        };

        this.producer = role("producer", extra.producerRole, "Sends events to the pipeline's stream", [
            { Sid: "PutEvents", Effect: "Allow", Action: "kinesis:PutRecords", Resource: ingest.stream.arn },
            // The shards' hash-key ranges: an aggregate holds only records bound for one shard.
            { Sid: "ListShards", Effect: "Allow", Action: "kinesis:ListShards", Resource: ingest.stream.arn },
            encryptEvents,
        ]);

        this.operator = role("operator", extra.operatorRole, "Checks, reconciles and heals the pipeline (smoke, reconcile, redrive, replay)", [
            // `xtask smoke` sends its canaries one by one.
            { Sid: "PutCanaries", Effect: "Allow", Action: "kinesis:PutRecord", Resource: ingest.stream.arn },
            encryptEvents,
            {
                // Redrive re-reads the sequence range a stream dead letter names; reconciliation
                // counts every unit the stream holds.
                Sid: "ReadStream",
                Effect: "Allow",
                Action: ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"],
                Resource: ingest.stream.arn,
            },
            {
                Sid: "InvokeFunctions",
                Effect: "Allow",
                Action: "lambda:InvokeFunction",
                Resource: [ingest.fn.arn, transform.fn.arn],
            },
            {
                // Reconciliation lists quarantine and processed objects; `xtask replay` lists the
                // raw objects of the hours it re-transforms.
                Sid: "ListPipelineObjects",
                Effect: "Allow",
                Action: "s3:ListBucket",
                Resource: [storage.raw.arn, storage.processed.arn],
                Condition: { StringLike: { "s3:prefix": [`${RAW_PREFIX}*`, `${QUARANTINE_PREFIX}*`, `${PROCESSED_PREFIX}*`] } },
            },
            {
                // Reconciliation reads back every processed row and quarantine line.
                Sid: "ReadPipelineObjects",
                Effect: "Allow",
                Action: "s3:GetObject",
                Resource: [pulumi.interpolate`${storage.raw.arn}/${QUARANTINE_PREFIX}*`, pulumi.interpolate`${storage.processed.arn}/${PROCESSED_PREFIX}*`],
            },
            {
                Sid: "ReadMetadata",
                Effect: "Allow",
                Action: "dynamodb:Scan",
                Resource: storage.table.arn,
            },
            {
                Sid: "ReadAndRedriveDeadLetters",
                Effect: "Allow",
                Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                Resource: [ingest.dlq.arn, transform.dlq.arn],
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
