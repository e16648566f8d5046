import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { NO_BUCKET_KEY_BUCKET_ROLES } from "../../policy/rules";
import { denyInsecureTransportToBucket, policyDocument, type Context, type Statement } from "../iam";

/** The tag that says what a bucket holds; the policies read it (`bucket-role`). */
export const BUCKET_ROLE_TAG = "bucket-role";
export type BucketRole = "raw" | "processed" | "access-logs" | "audit-logs";

export interface SecureBucketArgs {
    ctx: Context;
    bucketName: string;
    role: BucketRole;
    /**
     * SSE-KMS with this key and an S3 Bucket Key, except for the roles in the policy pack's
     * `NO_BUCKET_KEY_BUCKET_ROLES` (the CloudTrail bucket: see policy/rules.ts for why). Without a
     * key the bucket uses SSE-S3, which only server access log buckets may do: S3 cannot deliver
     * access logs to an SSE-KMS bucket.
     */
    kmsKeyArn?: pulumi.Input<string>;
    lifecycleRules: aws.types.input.s3.BucketLifecycleConfigurationRule[];
    /** Statements added to the bucket policy after the TLS-only statement. */
    extraStatements?: (bucketArn: pulumi.Output<string>) => Statement[];
    /** Server access logging to this bucket and prefix. */
    accessLogging?: { targetBucket: pulumi.Input<string>; targetPrefix: string };
}

/**
 * A private bucket with every guard this project requires: owner-enforced objects, all four public
 * access blocks, default encryption, versioning, a TLS-only policy, lifecycle rules and optional
 * access logging. `forceDestroy` and retention follow `storage.retain_on_delete`; a retained bucket
 * keeps its guards, since they are retained with it.
 */
export class SecureBucket extends pulumi.ComponentResource {
    readonly bucket: aws.s3.Bucket;
    readonly policy: aws.s3.BucketPolicy;
    readonly publicAccessBlock: aws.s3.BucketPublicAccessBlock;
    readonly arn: pulumi.Output<string>;
    readonly name: pulumi.Output<string>;

    constructor(name: string, args: SecureBucketArgs, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:SecureBucket", name, {}, opts);
        const { ctx } = args;
        const retain = ctx.env.storage.retain_on_delete;
        const child: pulumi.CustomResourceOptions = { parent: this, retainOnDelete: retain };

        this.bucket = new aws.s3.Bucket(
            name,
            {
                bucket: args.bucketName,
                forceDestroy: !retain,
                tags: { [BUCKET_ROLE_TAG]: args.role },
            },
            child,
        );
        // The name (not `id`): it is known during a preview, so policies can match sub-resources to it.
        const bucketId = this.bucket.bucket;
        this.arn = this.bucket.arn;
        this.name = this.bucket.bucket;

        const ownership = new aws.s3.BucketOwnershipControls(
            name,
            { bucket: bucketId, rule: { objectOwnership: "BucketOwnerEnforced" } },
            child,
        );

        this.publicAccessBlock = new aws.s3.BucketPublicAccessBlock(
            name,
            {
                bucket: bucketId,
                blockPublicAcls: true,
                blockPublicPolicy: true,
                ignorePublicAcls: true,
                restrictPublicBuckets: true,
            },
            child,
        );

        new aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            {
                bucket: bucketId,
                rules: [
                    args.kmsKeyArn === undefined
                        ? { applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }
                        : {
                              applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: args.kmsKeyArn },
                              bucketKeyEnabled: !NO_BUCKET_KEY_BUCKET_ROLES.includes(args.role),
                          },
                ],
            },
            child,
        );

        const versioning = new aws.s3.BucketVersioning(
            name,
            { bucket: bucketId, versioningConfiguration: { status: "Enabled" } },
            child,
        );

        new aws.s3.BucketLifecycleConfiguration(
            name,
            { bucket: bucketId, rules: args.lifecycleRules },
            { ...child, dependsOn: [versioning] },
        );

        const statements = [denyInsecureTransportToBucket(this.bucket.arn), ...(args.extraStatements?.(this.bucket.arn) ?? [])];
        this.policy = new aws.s3.BucketPolicy(
            name,
            { bucket: bucketId, policy: policyDocument(statements) },
            { ...child, dependsOn: [this.publicAccessBlock, ownership] },
        );

        if (args.accessLogging) {
            new aws.s3.BucketLogging(
                name,
                {
                    bucket: bucketId,
                    targetBucket: args.accessLogging.targetBucket,
                    targetPrefix: args.accessLogging.targetPrefix,
                },
                child,
            );
        }

        this.registerOutputs({ arn: this.arn, name: this.name });
    }
}

/** Lifecycle rule: expire noncurrent versions and delete markers, abort stale multipart uploads. */
export function noncurrentVersionRule(days: number): aws.types.input.s3.BucketLifecycleConfigurationRule {
    return {
        id: "expire-noncurrent-versions",
        status: "Enabled",
        filter: {},
        noncurrentVersionExpiration: { noncurrentDays: days },
        expiration: { expiredObjectDeleteMarker: true },
        abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
    };
}
