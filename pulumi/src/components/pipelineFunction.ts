import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Artifact } from "../artifacts";
import type { FunctionSettings } from "../config";
import { arn, lambdaAssumeRolePolicy, policyDocument, RESOURCE_WILDCARD_ACTIONS, type Context, type Statement } from "../iam";

/** Where VPC-attached functions run; absent when `network.vpc` is off. */
export interface FunctionNetwork {
    subnetIds: pulumi.Input<string>[];
    subnetArns: pulumi.Input<string>[];
    securityGroupId: pulumi.Input<string>;
    securityGroupArn: pulumi.Input<string>;
}

export interface PipelineFunctionArgs {
    ctx: Context;
    functionName: string;
    roleName: string;
    logGroupName: string;
    settings: FunctionSettings;
    artifact: Artifact;
    kmsKeyArn: pulumi.Input<string>;
    environment: Record<string, pulumi.Input<string>>;
    /** The function's own permissions; logs, tracing, KMS and VPC statements are added here. */
    statements: Statement[];
    network?: FunctionNetwork;
}

export interface PipelineFunction {
    logGroup: aws.cloudwatch.LogGroup;
    role: aws.iam.Role;
    rolePolicy: aws.iam.RolePolicy;
    fn: aws.lambda.Function;
}

/**
 * A Rust function on `provided.al2023`/arm64 with its own log group (created first, so Lambda never
 * creates one without retention), its own role and one inline policy of explicit actions on
 * explicit resources. Created as children of `parent`.
 */
export function pipelineFunction(name: string, args: PipelineFunctionArgs, parent: pulumi.Resource): PipelineFunction {
    const { ctx } = args;
    const opts: pulumi.CustomResourceOptions = { parent };

    const logGroup = new aws.cloudwatch.LogGroup(
        `${name}-logs`,
        {
            name: args.logGroupName,
            retentionInDays: ctx.env.observability.log_retention_days,
            kmsKeyId: args.kmsKeyArn,
        },
        opts,
    );

    const role = new aws.iam.Role(
        `${name}-role`,
        {
            name: args.roleName,
            description: `Execution role of ${args.functionName}`,
            assumeRolePolicy: lambdaAssumeRolePolicy(),
            maxSessionDuration: 3600,
        },
        opts,
    );

    const statements: Statement[] = [
        ...args.statements,
        {
            Sid: "UsePipelineKey",
            Effect: "Allow",
            Action: ["kms:Decrypt", "kms:GenerateDataKey"],
            Resource: args.kmsKeyArn,
        },
        {
            Sid: "WriteOwnLogs",
            Effect: "Allow",
            Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
            Resource: pulumi.interpolate`${logGroup.arn}:log-stream:*`,
        },
    ];
    if (ctx.env.observability.tracing) {
        statements.push({
            Sid: "WriteTraces",
            Effect: "Allow",
            Action: RESOURCE_WILDCARD_ACTIONS.filter((a) => a.startsWith("xray:")),
            // X-Ray authorises these actions only on "*" (documented exception, policy/rules.ts).
            Resource: "*",
        });
    }
    if (args.network) {
        const enis = arn(ctx, "ec2", "network-interface/*");
        statements.push(
            {
                Sid: "CreateVpcNetworkInterfaces",
                Effect: "Allow",
                Action: "ec2:CreateNetworkInterface",
                Resource: [enis, ...args.network.subnetArns, args.network.securityGroupArn],
            },
            {
                Sid: "ManageVpcNetworkInterfaces",
                Effect: "Allow",
                Action: ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
                Resource: enis,
            },
            {
                Sid: "DescribeVpcNetwork",
                Effect: "Allow",
                Action: RESOURCE_WILDCARD_ACTIONS.filter((a) => a.startsWith("ec2:")),
                // EC2 Describe* actions authorise only on "*" (documented exception, policy/rules.ts).
                Resource: "*",
            },
        );
    }

    const rolePolicy = new aws.iam.RolePolicy(
        `${name}-policy`,
        { name: `${args.functionName}-permissions`, role: role.id, policy: policyDocument(statements) },
        opts,
    );

    const fn = new aws.lambda.Function(
        name,
        {
            name: args.functionName,
            description: `${args.artifact.function} artifact sha256 ${args.artifact.sha256}`,
            role: role.arn,
            runtime: "provided.al2023",
            architectures: [args.artifact.arch],
            handler: "bootstrap",
            code: new pulumi.asset.FileArchive(args.artifact.zipPath),
            sourceCodeHash: args.artifact.sourceCodeHash,
            memorySize: args.settings.memory_mb,
            timeout: args.settings.timeout_seconds,
            ...(args.settings.reserved_concurrency !== undefined && args.settings.reserved_concurrency !== null
                ? { reservedConcurrentExecutions: args.settings.reserved_concurrency }
                : {}),
            loggingConfig: { logFormat: "JSON", logGroup: logGroup.name },
            tracingConfig: { mode: ctx.env.observability.tracing ? "Active" : "PassThrough" },
            environment: { variables: args.environment },
            ...(args.network
                ? { vpcConfig: { subnetIds: args.network.subnetIds, securityGroupIds: [args.network.securityGroupId] } }
                : {}),
        },
        // The role must carry its permissions before Lambda validates them (VPC, destinations).
        { parent, dependsOn: [rolePolicy, logGroup] },
    );

    return { logGroup, role, rolePolicy, fn };
}
