// Runs the program against Pulumi's mock monitor and records every resource it registers.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";
import * as settings from "@pulumi/pulumi/runtime/settings";

import { loadArtifacts, sha256File, type Artifacts, type FunctionKey } from "../src/artifacts";
import { loadEnvironment, type Environment } from "../src/config";
import { createPipeline } from "../src/pipeline";
import type { ResourceLike } from "../policy/rules";

export const ACCOUNT_ID = "123456789012";
export const PROJECT = "eventpipe";
export const GIT_SHA = "0123456789abcdef0123456789abcdef01234567";

export interface Registered {
    type: string;
    name: string;
    custom: boolean;
    provider?: string;
    inputs: Record<string, any>;
    state: Record<string, any>;
    urn: string;
}

/** A valid, empty zip archive (an end-of-central-directory record) whose comment makes it unique. */
export function emptyZip(comment: string): Buffer {
    const c = Buffer.from(comment, "utf8");
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(c.length, 20);
    return Buffer.concat([eocd, c]);
}

const tempDirs: string[] = [];
process.on("exit", () => {
    for (const dir of tempDirs) {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(prefix: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.push(dir);
    return dir;
}

/** Writes two function zips and their manifest into a fresh directory; returns the manifest path. */
export function writeFixtureManifest(opts: { gitSha?: string; mutate?: (doc: any, dir: string) => void } = {}): string {
    const dir = tempDir("eventpipe-artifacts-");
    const functions = (["stream-processor", "transformer"] as FunctionKey[]).map((fn) => {
        const zip = `${fn}.zip`;
        fs.writeFileSync(path.join(dir, zip), emptyZip(`${fn} fixture`));
        return { function: fn, arch: "arm64", zip, sha256: sha256File(path.join(dir, zip)), size: fs.statSync(path.join(dir, zip)).size };
    });
    const doc = { git_sha: opts.gitSha ?? GIT_SHA, functions };
    opts.mutate?.(doc, dir);
    const manifest = path.join(dir, "manifest.json");
    fs.writeFileSync(manifest, JSON.stringify(doc, null, 2));
    return manifest;
}

let fixtureArtifacts: Artifacts | undefined;
export function artifacts(): Artifacts {
    fixtureArtifacts ??= loadArtifacts(writeFixtureManifest());
    return fixtureArtifacts;
}

function last<T>(items: T[]): T {
    return items[items.length - 1] as T;
}

/** The outputs a real provider would compute, for the resource types the program uses. */
function mockState(type: string, name: string, inputs: Record<string, any>, region: string): { id: string; state: Record<string, any> } {
    const a = ACCOUNT_ID;
    const short = last(type.split(":"));
    const id = `${short.toLowerCase()}-${name}`;
    switch (type) {
        case "aws:kms/key:Key":
            return { id: `key-${name}`, state: { arn: `arn:aws:kms:${region}:${a}:key/key-${name}`, keyId: `key-${name}` } };
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
            const arn = `arn:aws:secretsmanager:${region}:${a}:secret:${inputs.name}-AbCdEf`;
            return { id: arn, state: { arn } };
        }
        case "aws:cloudwatch/logGroup:LogGroup":
            return { id: inputs.name, state: { arn: `arn:aws:logs:${region}:${a}:log-group:${inputs.name}` } };
        case "aws:iam/role:Role":
            return { id: inputs.name, state: { arn: `arn:aws:iam::${a}:role/${inputs.name}` } };
        case "aws:lambda/function:Function": {
            const arn = `arn:aws:lambda:${region}:${a}:function:${inputs.name}`;
            return { id: inputs.name, state: { arn, invokeArn: `${arn}/invocations`, qualifiedArn: `${arn}:$LATEST` } };
        }
        case "aws:cloudtrail/trail:Trail":
            return { id: inputs.name, state: { arn: `arn:aws:cloudtrail:${region}:${a}:trail/${inputs.name}` } };
        case "aws:ec2/vpc:Vpc":
            return { id: "vpc-0123", state: { arn: `arn:aws:ec2:${region}:${a}:vpc/vpc-0123` } };
        case "aws:ec2/subnet:Subnet":
            return { id: `subnet-${name}`, state: { arn: `arn:aws:ec2:${region}:${a}:subnet/subnet-${name}` } };
        case "aws:ec2/securityGroup:SecurityGroup":
            return { id: `sg-${name}`, state: { arn: `arn:aws:ec2:${region}:${a}:security-group/sg-${name}` } };
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

export interface Deployment {
    env: Environment;
    resources: Registered[];
    outputs: Record<string, unknown>;
}

async function resolve(value: unknown): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) {
        return new Promise((res) => (value as pulumi.Output<unknown>).apply((v) => res(v)));
    }
    return value;
}

/**
 * Runs `createPipeline` for a stack under mocks. `program` replaces the default program (for
 * tests of `run()`); the environment is read from the repository's files.
 */
export async function deploy(stack: string, program?: () => Promise<Record<string, unknown>>): Promise<Deployment> {
    const env = loadEnvironment(stack);
    const recorded: Omit<Registered, "urn">[] = [];
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                const { id, state } = args.custom
                    ? mockState(args.type, args.name, args.inputs, env.region)
                    : { id: `${args.name}-id`, state: {} };
                const full = { ...args.inputs, ...Object.fromEntries(Object.entries(state).filter(([, v]) => v !== undefined)) };
                recorded.push({ type: args.type, name: args.name, custom: args.custom ?? true, provider: args.provider, inputs: args.inputs, state: full });
                return { id, state: full };
            },
            call(args) {
                switch (args.token) {
                    case "aws:index/getCallerIdentity:getCallerIdentity":
                        return { accountId: ACCOUNT_ID, arn: `arn:aws:iam::${ACCOUNT_ID}:user/test`, userId: "AIDTEST", id: ACCOUNT_ID };
                    case "aws:index/getPartition:getPartition":
                        return { partition: "aws", dnsSuffix: "amazonaws.com", reverseDnsPrefix: "com.amazonaws", id: "aws" };
                    case "aws:index/getAvailabilityZones:getAvailabilityZones":
                        return { names: ["a", "b", "c", "d"].map((z) => `${env.region}${z}`), zoneIds: [], id: env.region };
                    default:
                        throw new Error(`unexpected invoke ${args.token}`);
                }
            },
        },
        PROJECT,
        stack,
        false,
    );

    const result = program
        ? await program()
        : ((await createPipeline({ env, artifacts: artifacts(), gitSha: GIT_SHA })) as unknown as Record<string, unknown>);
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
    return { env, resources, outputs };
}

export function ofType(d: Deployment, type: string): Registered[] {
    return d.resources.filter((r) => r.type === type);
}

export function one(d: Deployment, type: string, predicate: (r: Registered) => boolean = () => true): Registered {
    const found = ofType(d, type).filter(predicate);
    if (found.length !== 1) {
        throw new Error(`expected one ${type}, found ${found.length}: ${found.map((r) => r.name).join(", ")}`);
    }
    return found[0] as Registered;
}

/** Registered custom resources in the form the policies take (inputs plus computed outputs). */
export function asPolicyResources(d: Deployment): ResourceLike[] {
    return d.resources
        .filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"))
        .map((r) => ({ type: r.type, name: r.name, urn: r.urn, props: r.state }));
}

export function statements(policyJson: string): any[] {
    return JSON.parse(policyJson).Statement;
}
