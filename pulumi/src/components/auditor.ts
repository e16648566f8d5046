import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Artifact } from "../artifacts";
import { scheduleExpression } from "../settings";
import { servicePrincipal, type Context } from "../iam";
import { PENDING_INDEX, RAW_PREFIX } from "../names";
import { pipelineFunction, type FunctionNetwork } from "./pipelineFunction";
import type { Storage } from "./storage";
import type { Transform } from "./transform";

export interface AuditorArgs {
    ctx: Context;
    storage: Storage;
    transform: Transform;
    artifact: Artifact;
    network?: FunctionNetwork;
}

/**
 * The auditor (`services/auditor`): on an EventBridge schedule, finds the raw objects nobody will
 * process (recorded but not processed after `storage.stuck_after_minutes`, or with no metadata
 * item) and re-drives each to the transformer by invoking it asynchronously with the object's
 * `ObjectCreated:Put` notification. Its role may read the pending index, the metadata items and
 * the `raw/` listing and object heads, and invoke the transformer: it writes nothing. Its alarms
 * are in the Observability component.
 *
 * (Not the CloudTrail component `Audit`, which records S3 data events.)
 */
export class Auditor extends pulumi.ComponentResource {
    readonly fn: aws.lambda.Function;
    readonly role: aws.iam.Role;
    readonly logGroup: aws.cloudwatch.LogGroup;
    readonly rule: aws.cloudwatch.EventRule;
    readonly target: aws.cloudwatch.EventTarget;
    readonly permission: aws.lambda.Permission;

    constructor(name: string, args: AuditorArgs, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Auditor", name, {}, opts);
        const { ctx, storage, transform } = args;
        const { env, names, extra } = ctx;

        const created = pipelineFunction(
            `${name}-function`,
            {
                ctx,
                functionName: names.auditor,
                roleName: extra.auditorRole,
                logGroupName: extra.auditorLogGroup,
                settings: env.auditor,
                artifact: args.artifact,
                kmsKeyArn: storage.key.arn,
                network: args.network,
                environment: {
                    RAW_BUCKET: names.raw_bucket,
                    METADATA_TABLE: names.metadata_table,
                    TRANSFORMER_FUNCTION: transform.fn.name,
                    STUCK_AFTER_MINUTES: String(env.storage.stuck_after_minutes),
                    AUDIT_PERIOD_MINUTES: String(env.auditor.period_minutes),
                    LOOKBACK_HOURS: String(env.auditor.lookback_hours),
                    PIPELINE_ENV: env.name,
                    RUST_LOG: env.auditor.log_level,
                },
                statements: [
                    {
                        // Recorded and not processed: one query per pending bucket, on the index
                        // that holds exactly the unprocessed objects (keys only).
                        Sid: "QueryPendingIndex",
                        Effect: "Allow",
                        Action: "dynamodb:Query",
                        Resource: pulumi.interpolate`${storage.table.arn}/index/${PENDING_INDEX}`,
                    },
                    {
                        // Whether a listed object has a metadata item: a consistent read of the item.
                        Sid: "ReadMetadataItems",
                        Effect: "Allow",
                        Action: "dynamodb:GetItem",
                        Resource: storage.table.arn,
                    },
                    {
                        // ListObjectsV2 of the `raw/dt=YYYY-MM-DD/hour=HH/` prefixes of the lookback;
                        // also lets S3 answer 404 rather than 403 to the HEAD of an object deleted
                        // since it was listed.
                        Sid: "ListRawPrefix",
                        Effect: "Allow",
                        Action: "s3:ListBucket",
                        Resource: storage.raw.arn,
                        Condition: { StringLike: { "s3:prefix": `${RAW_PREFIX}*` } },
                    },
                    {
                        // HeadObject of a listed object without an item, for its user metadata. S3
                        // authorises HEAD as s3:GetObject; a HEAD returns no body, so S3 asks KMS for
                        // nothing and the role has no key statement (keyActions below): it cannot
                        // read an object's content.
                        Sid: "HeadRawObjects",
                        Effect: "Allow",
                        Action: "s3:GetObject",
                        Resource: pulumi.interpolate`${storage.raw.arn}/${RAW_PREFIX}*`,
                    },
                    {
                        // The re-drive: an asynchronous invocation (InvocationType Event) with the
                        // object's notification, so the transformer's retries and on-failure
                        // destination apply as to S3's own notifications.
                        Sid: "RedriveToTransformer",
                        Effect: "Allow",
                        Action: "lambda:InvokeFunction",
                        Resource: transform.fn.arn,
                    },
                ],
                // No request of the auditor makes a service use the pipeline key on its behalf:
                // HEAD and listings decrypt nothing, and DynamoDB uses its own grant on the key.
                keyActions: [],
            },
            this,
        );
        this.fn = created.fn;
        this.role = created.role;
        this.logGroup = created.logGroup;

        const schedule = scheduleExpression(env.auditor.period_minutes);
        this.rule = new aws.cloudwatch.EventRule(
            `${name}-schedule`,
            { name: extra.auditorSchedule, description: `Runs ${names.auditor}: ${schedule}`, scheduleExpression: schedule },
            { parent: this },
        );

        // EventBridge invokes the function as itself, through this resource policy statement.
        this.permission = new aws.lambda.Permission(
            `${name}-schedule-invoke`,
            {
                function: this.fn.name,
                action: "lambda:InvokeFunction",
                principal: servicePrincipal("events"),
                sourceArn: this.rule.arn,
            },
            { parent: this },
        );

        this.target = new aws.cloudwatch.EventTarget(
            `${name}-schedule`,
            { rule: this.rule.name, targetId: "auditor", arn: this.fn.arn },
            { parent: this, dependsOn: [this.permission] },
        );

        this.registerOutputs({ functionName: this.fn.name, scheduleRuleName: this.rule.name });
    }
}
