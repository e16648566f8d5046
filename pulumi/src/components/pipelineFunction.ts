import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Artifact } from "../artifacts";
import { permissionsBoundaryArn } from "../boundary";
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
    /**
     * What the function's requests ask of the pipeline key through the services that encrypt with
     * it (SSE-KMS objects, the stream, the queues, the secret): the `UsePipelineKey` statement,
     * left out when empty. Default `kms:Decrypt` and `kms:GenerateDataKey`.
     */
    keyActions?: readonly string[];
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
            // The deployer may create a role only with its class's boundary (pulumi/bootstrap).
            permissionsBoundary: permissionsBoundaryArn(ctx.env, ctx.accountId, ctx.partition),
        },
        opts,
    );

    const keyActions = args.keyActions ?? ["kms:Decrypt", "kms:GenerateDataKey"];
    const statements: Statement[] = [
        ...args.statements,
        ...(keyActions.length > 0 ? [{ Sid: "UsePipelineKey", Effect: "Allow" as const, Action: [...keyActions], Resource: args.kmsKeyArn }] : []),
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
        statements.push(...vpcAccessStatements(ctx, args.network));
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

type VpcResourceType = "network-interface" | "subnet" | "security-group";

/**
 * What Lambda needs from the function's role to manage the Hyperplane ENIs of a VPC function:
 * exactly the EC2 actions of the AWS managed policy `AWSLambdaVPCAccessExecutionRole` in its
 * current version (v3, edited 2024-01-05:
 * https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html;
 * the same list is on https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html). Its
 * `logs:` actions are `WriteOwnLogs` above; `logs:CreateLogGroup` is not needed, the program creates
 * the log group.
 *
 * Each action maps to the resource types the Service Authorization Reference lets it be scoped to
 * (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html):
 * `CreateNetworkInterface` to the new interface, the subnet and the security group;
 * `DeleteNetworkInterface` and `Assign`/`UnassignPrivateIpAddresses` to the interface (Lambda's page
 * asks for every interface id of the account to be allowed for the delete, which
 * `network-interface/*` in this account and region does). `DescribeNetworkInterfaces` and
 * `DescribeSubnets` have no resource types: EC2 authorises them on `"*"` only, so they are granted
 * on `"*"` and must be in RESOURCE_WILDCARD_ACTIONS (policy/rules.ts), the one list of such actions.
 */
export const VPC_ACCESS_ACTIONS: Readonly<Record<string, readonly VpcResourceType[]>> = {
    "ec2:CreateNetworkInterface": ["network-interface", "subnet", "security-group"],
    "ec2:DeleteNetworkInterface": ["network-interface"],
    "ec2:AssignPrivateIpAddresses": ["network-interface"],
    "ec2:UnassignPrivateIpAddresses": ["network-interface"],
    "ec2:DescribeNetworkInterfaces": [],
    "ec2:DescribeSubnets": [],
};

/** One statement per distinct resource scope of VPC_ACCESS_ACTIONS. */
function vpcAccessStatements(ctx: Context, network: FunctionNetwork): Statement[] {
    const scope: Record<VpcResourceType, pulumi.Input<string>[]> = {
        "network-interface": [arn(ctx, "ec2", "network-interface/*")],
        subnet: network.subnetArns,
        "security-group": [network.securityGroupArn],
    };
    const sids: Record<string, string> = {
        "network-interface,subnet,security-group": "CreateVpcNetworkInterfaces",
        "network-interface": "ManageVpcNetworkInterfaces",
        "": "DescribeVpcNetwork",
    };
    const byScope = new Map<string, string[]>();
    for (const [action, types] of Object.entries(VPC_ACCESS_ACTIONS)) {
        const key = types.join(",");
        byScope.set(key, [...(byScope.get(key) ?? []), action]);
    }
    return [...byScope].map(([key, actions]): Statement => {
        const sid = sids[key];
        if (sid === undefined) {
            throw new Error(`no statement id for VPC actions scoped to ${key}: ${actions.join(", ")}`);
        }
        const action = actions.length === 1 ? (actions[0] as string) : actions;
        if (key === "") {
            const unlisted = actions.filter((a) => !RESOURCE_WILDCARD_ACTIONS.includes(a));
            if (unlisted.length > 0) {
                throw new Error(`${unlisted.join(", ")} would be granted on "*" but is not in RESOURCE_WILDCARD_ACTIONS`);
            }
            // No resource types in the Service Authorization Reference: "*" only (policy/rules.ts).
            return { Sid: sid, Effect: "Allow", Action: action, Resource: "*" };
        }
        const resources = (key.split(",") as VpcResourceType[]).flatMap((t) => scope[t]);
        return { Sid: sid, Effect: "Allow", Action: action, Resource: resources.length === 1 ? (resources[0] as pulumi.Input<string>) : resources };
    });
}
