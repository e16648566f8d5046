// Policy documents, ARNs and the account context every component shares.

import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Environment } from "./config";
import type { ExtraNames, Names } from "./names";

/** What every component needs to know about where it is deployed. */
export interface Context {
    env: Environment;
    names: Names;
    extra: ExtraNames;
    accountId: string;
    partition: string;
    region: string;
    /** `amazonaws.com` (or the partition's suffix), for service principals and endpoint services. */
    dnsSuffix: string;
    provider: aws.Provider;
}

export interface Statement {
    Sid?: string;
    Effect: "Allow" | "Deny";
    Principal?: "*" | Record<string, pulumi.Input<string> | pulumi.Input<string>[]>;
    Action: string | string[];
    Resource: pulumi.Input<string> | pulumi.Input<string>[];
    Condition?: Record<string, Record<string, pulumi.Input<string> | pulumi.Input<string>[]>>;
}

/** A policy document as JSON, resolved once every ARN in it is known. */
export function policyDocument(statements: Statement[]): pulumi.Output<string> {
    return pulumi.jsonStringify({ Version: "2012-10-17", Statement: statements });
}

/** `arn:<partition>:<service>:<region>:<account>:<resource>`; S3 and IAM ARNs leave out what they do not carry. */
export function arn(ctx: Context, service: string, resource: string): string {
    switch (service) {
        case "s3":
            return `arn:${ctx.partition}:s3:::${resource}`;
        case "iam":
            return `arn:${ctx.partition}:iam::${ctx.accountId}:${resource}`;
        default:
            return `arn:${ctx.partition}:${service}:${ctx.region}:${ctx.accountId}:${resource}`;
    }
}

export function servicePrincipal(service: string): string {
    return `${service}.amazonaws.com`;
}

/** The trust policy of a Lambda execution role. */
export function lambdaAssumeRolePolicy(): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            {
                Effect: "Allow",
                Principal: { Service: servicePrincipal("lambda") },
                Action: "sts:AssumeRole",
            },
        ],
    });
}

/**
 * Actions that AWS authorises only on `Resource: "*"`; the `iam-no-wildcards` policy allows `"*"`
 * for exactly these (policy/rules.ts is the one list).
 */
export { RESOURCE_WILDCARD_ACTIONS } from "../policy/rules";

/** Deny every request that does not use TLS, on a bucket and its objects. */
export function denyInsecureTransportToBucket(bucketArn: pulumi.Input<string>): Statement {
    return {
        Sid: "DenyInsecureTransport",
        Effect: "Deny",
        Principal: "*",
        Action: "s3:*",
        Resource: [bucketArn, pulumi.interpolate`${bucketArn}/*`],
        Condition: { Bool: { "aws:SecureTransport": "false" } },
    };
}

/** Deny every request that does not use TLS, on a queue. */
export function denyInsecureTransportToQueue(queueArn: pulumi.Input<string>): Statement {
    return {
        Sid: "DenyInsecureTransport",
        Effect: "Deny",
        Principal: "*",
        Action: "sqs:*",
        Resource: queueArn,
        Condition: { Bool: { "aws:SecureTransport": "false" } },
    };
}

/**
 * The policy of a dead-letter queue: only `senderRoleArn` may send to it, and only over TLS.
 * Resource name `${name}-dlq`, statement id `sid`.
 */
export function deadLetterQueuePolicy(
    name: string,
    queue: aws.sqs.Queue,
    senderRoleArn: pulumi.Input<string>,
    sid: string,
    parent: pulumi.Resource,
): aws.sqs.QueuePolicy {
    return new aws.sqs.QueuePolicy(
        `${name}-dlq`,
        {
            queueUrl: queue.url,
            policy: policyDocument([
                {
                    Sid: sid,
                    Effect: "Allow",
                    Principal: { AWS: senderRoleArn },
                    Action: "sqs:SendMessage",
                    Resource: queue.arn,
                },
                denyInsecureTransportToQueue(queue.arn),
            ]),
        },
        { parent },
    );
}
