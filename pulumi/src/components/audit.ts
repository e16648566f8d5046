import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { arn, servicePrincipal, type Context, type Statement } from "../iam";
import { noncurrentVersionRule, SecureBucket } from "./secureBucket";
import type { Storage } from "./storage";

/** Data-event logs are kept this long; they are evidence, not telemetry. */
export const TRAIL_LOG_RETENTION_DAYS = 365;

/**
 * A CloudTrail trail of S3 data events (object reads and writes) on the raw and processed buckets,
 * encrypted with the pipeline key, delivered to a bucket of its own. Management events are left
 * to the account's organisation trail.
 *
 * The trail bucket (role `audit-logs`) uses SSE-KMS without an S3 Bucket Key: with one, AWS
 * requires `kms:Decrypt` for CloudTrail in the key policy
 * (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html).
 * The choice and the policy pack's exception are explained at `NO_BUCKET_KEY_BUCKET_ROLES` in
 * policy/rules.ts; the key policy's CloudTrail statements are in storage.ts.
 */
export class Audit extends pulumi.ComponentResource {
    readonly bucket: SecureBucket;
    readonly trail: aws.cloudtrail.Trail;

    constructor(name: string, args: { ctx: Context; storage: Storage }, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Audit", name, {}, opts);
        const { ctx, storage } = args;
        const trailArn = arn(ctx, "cloudtrail", `trail/${ctx.extra.trail}`);

        this.bucket = new SecureBucket(
            `${name}-trail`,
            {
                ctx,
                bucketName: ctx.extra.trailBucket,
                role: "audit-logs",
                kmsKeyArn: storage.key.arn,
                lifecycleRules: [
                    { id: "expire-trail-logs", status: "Enabled", filter: {}, expiration: { days: TRAIL_LOG_RETENTION_DAYS } },
                    noncurrentVersionRule(1),
                ],
                extraStatements: (bucketArn): Statement[] => [
                    {
                        Sid: "CloudTrailChecksBucketAcl",
                        Effect: "Allow",
                        Principal: { Service: servicePrincipal("cloudtrail") },
                        Action: "s3:GetBucketAcl",
                        Resource: bucketArn,
                        Condition: { StringEquals: { "aws:SourceArn": trailArn } },
                    },
                    {
                        Sid: "CloudTrailWritesLogs",
                        Effect: "Allow",
                        Principal: { Service: servicePrincipal("cloudtrail") },
                        Action: "s3:PutObject",
                        Resource: pulumi.interpolate`${bucketArn}/AWSLogs/${ctx.accountId}/*`,
                        Condition: {
                            StringEquals: { "aws:SourceArn": trailArn, "s3:x-amz-acl": "bucket-owner-full-control" },
                        },
                    },
                ],
            },
            { parent: this },
        );

        this.trail = new aws.cloudtrail.Trail(
            `${name}-trail`,
            {
                name: ctx.extra.trail,
                s3BucketName: this.bucket.name,
                kmsKeyId: storage.key.arn,
                enableLogFileValidation: true,
                includeGlobalServiceEvents: false,
                isMultiRegionTrail: false,
                advancedEventSelectors: [
                    {
                        name: "Object-level events on the pipeline buckets",
                        fieldSelectors: [
                            { field: "eventCategory", equals: ["Data"] },
                            { field: "resources.type", equals: ["AWS::S3::Object"] },
                            {
                                field: "resources.ARN",
                                startsWiths: [pulumi.interpolate`${storage.raw.arn}/`, pulumi.interpolate`${storage.processed.arn}/`],
                            },
                        ],
                    },
                ],
            },
            // CloudTrail checks bucket policy and key policy when the trail is created.
            { parent: this, dependsOn: [this.bucket.policy, storage.key] },
        );

        this.registerOutputs({ trailArn: this.trail.arn, bucket: this.bucket.name });
    }
}
