// Runs a Pulumi program against Pulumi's mock monitor and records every resource it registers, with
// the outputs a real provider would compute. The unit tests use it to inspect the program; the
// authorisation renderer (render.ts) uses it to read the policy documents the program generates.

import * as pulumi from "@pulumi/pulumi";
import * as settings from "@pulumi/pulumi/runtime/settings";

export interface Registered {
    type: string;
    name: string;
    custom: boolean;
    provider?: string;
    inputs: Record<string, any>;
    state: Record<string, any>;
    urn: string;
}

/**
 * Identifiers that AWS picks when a resource is created: the mocks make them up, the renderer makes
 * them placeholders that the local provisioner replaces with what the emulator picked.
 */
export interface ComputedIds {
    /** The key id in a KMS key ARN. */
    kmsKey(name: string): string;
    /** The six characters Secrets Manager appends to a secret's ARN. */
    secretSuffix(name: string): string;
    subnet(name: string): string;
    securityGroup(name: string): string;
}

/** Made-up identifiers, readable in test failures. */
export const TEST_IDS: ComputedIds = {
    kmsKey: (name) => `key-${name}`,
    secretSuffix: () => "AbCdEf",
    subnet: (name) => `subnet-${name}`,
    securityGroup: (name) => `sg-${name}`,
};

/** `<<kind:logical-name>>`: a value only the created resource knows. */
export function placeholder(kind: string, name: string): string {
    return `<<${kind}:${name}>>`;
}

export const PLACEHOLDER_IDS: ComputedIds = {
    kmsKey: (name) => placeholder("kms-key", name),
    secretSuffix: (name) => placeholder("secret-suffix", name),
    subnet: (name) => placeholder("subnet", name),
    securityGroup: (name) => placeholder("security-group", name),
};

export interface MockContext {
    accountId: string;
    region: string;
    ids: ComputedIds;
}

function last<T>(items: T[]): T {
    return items[items.length - 1] as T;
}

/** The outputs a real provider would compute, for the resource types the program uses. */
function mockState(
    type: string,
    name: string,
    inputs: Record<string, any>,
    { accountId: a, region, ids }: MockContext,
): { id: string; state: Record<string, any> } {
    const short = last(type.split(":"));
    const id = `${short.toLowerCase()}-${name}`;
    switch (type) {
        case "aws:kms/key:Key": {
            const keyId = ids.kmsKey(name);
            return { id: keyId, state: { arn: `arn:aws:kms:${region}:${a}:key/${keyId}`, keyId } };
        }
        case "aws:s3/bucket:Bucket":
            return { id: inputs.bucket, state: { arn: `arn:aws:s3:::${inputs.bucket}`, bucket: inputs.bucket, tagsAll: inputs.tags } };
        case "aws:dynamodb/table:Table":
            return { id: inputs.name, state: { arn: `arn:aws:dynamodb:${region}:${a}:table/${inputs.name}` } };
        case "aws:kinesis/stream:Stream":
            return { id: inputs.name, state: { arn: `arn:aws:kinesis:${region}:${a}:stream/${inputs.name}` } };
        case "aws:sqs/queue:Queue": {
            const url = `https://sqs.${region}.amazonaws.com/${a}/${inputs.name}`;
            return { id: url, state: { url, arn: `arn:aws:sqs:${region}:${a}:${inputs.name}` } };
        }
        case "aws:sns/topic:Topic": {
            const arn = `arn:aws:sns:${region}:${a}:${inputs.name}`;
            return { id: arn, state: { arn } };
        }
        case "aws:secretsmanager/secret:Secret": {
            const arn = `arn:aws:secretsmanager:${region}:${a}:secret:${inputs.name}-${ids.secretSuffix(name)}`;
            return { id: arn, state: { arn } };
        }
        case "aws:cloudwatch/logGroup:LogGroup":
            return { id: inputs.name, state: { arn: `arn:aws:logs:${region}:${a}:log-group:${inputs.name}` } };
        case "aws:iam/role:Role":
            return { id: inputs.name, state: { arn: `arn:aws:iam::${a}:role/${inputs.name}` } };
        case "aws:iam/policy:Policy":
            return { id: `arn:aws:iam::${a}:policy/${inputs.name}`, state: { arn: `arn:aws:iam::${a}:policy/${inputs.name}` } };
        case "aws:lambda/function:Function": {
            const arn = `arn:aws:lambda:${region}:${a}:function:${inputs.name}`;
            return { id: inputs.name, state: { arn, invokeArn: `${arn}/invocations`, qualifiedArn: `${arn}:$LATEST` } };
        }
        case "aws:cloudwatch/eventRule:EventRule":
            // A rule on the default event bus.
            return { id: inputs.name, state: { arn: `arn:aws:events:${region}:${a}:rule/${inputs.name}` } };
        case "aws:cloudtrail/trail:Trail":
            return { id: inputs.name, state: { arn: `arn:aws:cloudtrail:${region}:${a}:trail/${inputs.name}` } };
        case "aws:ec2/vpc:Vpc":
            return { id: "vpc-0123", state: { arn: `arn:aws:ec2:${region}:${a}:vpc/vpc-0123` } };
        case "aws:ec2/subnet:Subnet": {
            const subnet = ids.subnet(name);
            return { id: subnet, state: { arn: `arn:aws:ec2:${region}:${a}:subnet/${subnet}` } };
        }
        case "aws:ec2/securityGroup:SecurityGroup": {
            const sg = ids.securityGroup(name);
            return { id: sg, state: { arn: `arn:aws:ec2:${region}:${a}:security-group/${sg}` } };
        }
        case "aws:ec2/vpcEndpoint:VpcEndpoint":
            return { id: `vpce-${name}`, state: { prefixListId: inputs.vpcEndpointType === "Gateway" ? `pl-${name}` : undefined } };
        case "aws:cloudwatch/dashboard:Dashboard":
            return { id: inputs.dashboardName, state: {} };
        case "aws:glue/catalogDatabase:CatalogDatabase":
            return { id: `${a}:${inputs.name}`, state: {} };
        default:
            return { id, state: {} };
    }
}

async function resolve(value: unknown): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) {
        return new Promise((res) => (value as pulumi.Output<unknown>).apply((v) => res(v)));
    }
    return value;
}

export interface MockRun {
    resources: Registered[];
    outputs: Record<string, unknown>;
}

/**
 * Runs `program` as stack `stack` of `project` under mocks: every resource is recorded with its
 * inputs and mocked outputs, every output is resolved.
 */
export async function runUnderMocks(
    project: string,
    stack: string,
    ctx: MockContext,
    program: () => Promise<Record<string, unknown>>,
): Promise<MockRun> {
    const recorded: Omit<Registered, "urn">[] = [];
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                const { id, state } = args.custom ? mockState(args.type, args.name, args.inputs, ctx) : { id: `${args.name}-id`, state: {} };
                const full = { ...args.inputs, ...Object.fromEntries(Object.entries(state).filter(([, v]) => v !== undefined)) };
                recorded.push({ type: args.type, name: args.name, custom: args.custom ?? true, provider: args.provider, inputs: args.inputs, state: full });
                return { id, state: full };
            },
            call(args) {
                switch (args.token) {
                    case "aws:index/getCallerIdentity:getCallerIdentity":
                        return { accountId: ctx.accountId, arn: `arn:aws:iam::${ctx.accountId}:user/test`, userId: "AIDTEST", id: ctx.accountId };
                    case "aws:index/getPartition:getPartition":
                        return { partition: "aws", dnsSuffix: "amazonaws.com", reverseDnsPrefix: "com.amazonaws", id: "aws" };
                    case "aws:index/getAvailabilityZones:getAvailabilityZones":
                        return { names: ["a", "b", "c", "d"].map((z) => `${ctx.region}${z}`), zoneIds: [], id: ctx.region };
                    default:
                        throw new Error(`unexpected invoke ${args.token}`);
                }
            },
        },
        project,
        stack,
        false,
    );

    const result = await program();
    const outputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(result)) {
        outputs[k] = await resolve(v);
    }
    await (settings as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();

    const monitor = (settings as unknown as { getMonitor(): { getRegisteredResources(): Map<string, { urn: string }> } }).getMonitor();
    const urns = [...monitor.getRegisteredResources().keys()];
    const resources = recorded.map((r) => {
        const urn = urns.find((u) => {
            const parts = u.split("::");
            return last(parts) === r.name && last((parts[parts.length - 2] ?? "").split("$")) === r.type;
        });
        return { ...r, urn: urn ?? "" };
    });
    return { resources, outputs };
}
