// Renders the authorisation model of a stack (model.ts) from the Pulumi program itself: the program
// runs under mocks for an environment file, and every role, inline policy, permissions boundary and
// resource policy it registers is read back, with the encryption settings that imply KMS calls and
// the requests AWS makes with a function's role on its behalf.
//
// `renderModel("dev", { stack: "local", ... })` renders dev's documents addressed to the local
// stack's names (`eventpipe-local-*`), account and region: what the local emulator enforces.

import * as fs from "node:fs";
import * as path from "node:path";

import type { Artifact, Artifacts, FunctionKey } from "../src/artifacts";
import { FUNCTION_KEYS } from "../src/artifacts";
import { loadEnvironment, type Environment } from "../src/config";
import { boundaryPolicyDocument } from "../bootstrap/policies";
import { classBoundaryArn, environmentClass, permissionsBoundaryArn, type DeployedClass } from "../src/boundary";
import { namePrefix } from "../src/names";
import { createPipeline, defaultTags } from "../src/pipeline";
import { PLACEHOLDER_IDS, runUnderMocks, TEST_IDS, type Registered } from "./mocks";
import type { Model, PlatformRequest, PolicyDocument, Principal, Resource } from "./model";

export const PROJECT = "eventpipe";

/** The environments whose policies can be rendered, and the stack each renders as by default. */
export const POLICY_ENVIRONMENTS = { dev: "dev", prod: "prod", preview: "pr-0" } as const;
export type PolicyEnvironment = keyof typeof POLICY_ENVIRONMENTS;

/** Where the committed renderings for the local emulator live: `authz/local/<env>.json`. */
export const LOCAL_MODELS_DIR = path.resolve(__dirname, "local");

export interface Target {
    /** The stack whose names the documents address. */
    stack: string;
    accountId: string;
    region: string;
    /** Placeholders for identifiers AWS picks (the local provisioner fills them in) or made-up ones. */
    placeholders: boolean;
}

/** The local emulator's stack: `environments/local.toml`'s name and region, the emulator's account. */
export const LOCAL_ACCOUNT_ID = "000000000000";
export function localTarget(): Target {
    const local = loadEnvironment("local");
    return { stack: local.name, accountId: LOCAL_ACCOUNT_ID, region: local.region, placeholders: true };
}

/** The artifacts are only named in the documents through the functions; no zip is read under mocks. */
function renderArtifacts(): Artifacts {
    const artifact = (fn: FunctionKey): Artifact => ({
        function: fn,
        arch: "arm64",
        zipPath: `${fn}.zip`,
        sha256: "0".repeat(64),
        sourceCodeHash: Buffer.alloc(32).toString("base64"),
        size: 0,
    });
    return {
        manifestPath: "manifest.json",
        gitSha: "render",
        functions: Object.fromEntries(FUNCTION_KEYS.map((fn) => [fn, artifact(fn)])) as Record<FunctionKey, Artifact>,
    };
}

const parse = (doc: unknown): PolicyDocument => (typeof doc === "string" ? JSON.parse(doc) : doc) as PolicyDocument;

/** The ARN of the resource of `type` whose id (a subnet or security group id) is `id`. */
function arnOfId(resources: Registered[], type: string, id: string): string {
    const found = resources.find((r) => r.type === type && r.state.arn?.endsWith(`/${id}`));
    if (!found) {
        throw new Error(`no ${type} with id ${id}`);
    }
    return found.state.arn;
}

function ofType(resources: Registered[], type: string): Registered[] {
    return resources.filter((r) => r.type === type);
}

function single<T>(items: T[], what: string): T | undefined {
    if (items.length > 1) {
        throw new Error(`expected at most one ${what}, found ${items.length}`);
    }
    return items[0];
}

const LAMBDA_ESM = "https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html";
const LAMBDA_LOGS = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html";
const LAMBDA_XRAY = "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html";
const LAMBDA_VPC = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html";
const LAMBDA_DESTINATIONS = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html";
const KINESIS_ON_FAILURE = "https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html";

/**
 * The requests AWS makes with a function's execution role, which no code of ours makes: derived
 * from how the program configures the function, each with the page that documents it.
 */
function platformRequests(model: Omit<Model, "platform">): PlatformRequest[] {
    const out: PlatformRequest[] = [];
    const principalOf = (roleArn: string) => {
        const p = model.principals.find((x) => x.roleArn === roleArn);
        if (!p) {
            throw new Error(`no principal for role ${roleArn}`);
        }
        return p.id;
    };
    const ec2 = (resource: string) => `arn:${model.partition}:ec2:${model.region}:${model.accountId}:${resource}`;
    for (const r of model.resources) {
        const f = r.function;
        if (!f) {
            continue;
        }
        const principal = principalOf(f.roleArn);
        if (f.logGroupArn) {
            for (const action of ["logs:CreateLogStream", "logs:PutLogEvents"]) {
                out.push({ principal, action, resource: `${f.logGroupArn}:log-stream:2026/01/01/[$LATEST]0`, because: `Lambda sends the function's logs (${LAMBDA_LOGS})` });
            }
        }
        if (f.tracing) {
            for (const action of ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]) {
                out.push({ principal, action, resource: "*", because: `Lambda sends active-tracing segments (${LAMBDA_XRAY})` });
            }
        }
        if (f.vpc) {
            const because = `Lambda manages the function's network interfaces (${LAMBDA_VPC})`;
            // CreateNetworkInterface is authorised on the interface, its subnet and its security groups.
            out.push(
                { principal, action: "ec2:CreateNetworkInterface", resource: ec2("network-interface/eni-0"), because },
                ...f.vpc.subnetArns.map((resource) => ({ principal, action: "ec2:CreateNetworkInterface", resource, because })),
                ...f.vpc.securityGroupArns.map((resource) => ({ principal, action: "ec2:CreateNetworkInterface", resource, because })),
                { principal, action: "ec2:DescribeNetworkInterfaces", resource: "*", because },
                { principal, action: "ec2:DescribeSubnets", resource: "*", because },
                { principal, action: "ec2:DeleteNetworkInterface", resource: ec2("network-interface/eni-0"), because },
                { principal, action: "ec2:AssignPrivateIpAddresses", resource: ec2("network-interface/eni-0"), because },
                { principal, action: "ec2:UnassignPrivateIpAddresses", resource: ec2("network-interface/eni-0"), because },
            );
        }
        for (const source of f.eventSources) {
            const because = `the event-source mapping reads the stream with the function's role (${LAMBDA_ESM})`;
            for (const action of [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
            ]) {
                out.push({ principal, action, resource: source.sourceArn, because });
            }
            if (source.onFailureArn) {
                out.push({
                    principal,
                    action: "sqs:SendMessage",
                    resource: source.onFailureArn,
                    because: `the event-source mapping sends a failed batch's record to its on-failure queue (${KINESIS_ON_FAILURE})`,
                });
            }
        }
        if (f.asyncOnFailureArn) {
            out.push({
                principal,
                action: "sqs:SendMessage",
                resource: f.asyncOnFailureArn,
                because: `Lambda sends an asynchronous invocation that failed to its on-failure destination (${LAMBDA_DESTINATIONS})`,
            });
        }
    }
    return out;
}

/**
 * The permissions boundary of `env`'s roles: the bootstrap program's document for the environment's
 * class (the pipeline program only names it), with `env`'s names, account and region.
 */
export function boundaryDocument(env: Environment, accountId: string, envClass: DeployedClass = environmentClass(env.name)): PolicyDocument {
    return boundaryPolicyDocument({
        project: env.project,
        envClass,
        accountId,
        region: env.region,
        partition: "aws",
        repository: "eventpipe/eventpipe",
        network: { vpc: env.network.vpc, cloudtrail: env.network.cloudtrail },
    }) as unknown as PolicyDocument;
}

/** The model of one stack, from the program's registered resources. */
export function modelFrom(resources: Registered[], env: Environment, target: Omit<Target, "placeholders">): Model {
    const state = (r: Registered) => r.state;
    const prefix = `${namePrefix(env)}-`;

    const roles = ofType(resources, "aws:iam/role:Role");
    const rolePolicies = ofType(resources, "aws:iam/rolePolicy:RolePolicy");
    const attachments = ofType(resources, "aws:iam/rolePolicyAttachment:RolePolicyAttachment");
    if (attachments.length > 0) {
        throw new Error("the renderer reads inline role policies only; teach it managed policy attachments first");
    }
    const functions = ofType(resources, "aws:lambda/function:Function");
    const principals: Principal[] = roles.map((role) => {
        const s = state(role);
        const roleName: string = s.name;
        const isFunction = functions.some((f) => state(f).role === s.arn);
        const boundaryArn: string | undefined = s.permissionsBoundary || undefined;
        let permissionsBoundary: Principal["permissionsBoundary"];
        if (boundaryArn) {
            if (boundaryArn !== permissionsBoundaryArn(env, target.accountId, "aws")) {
                throw new Error(`role ${roleName} carries the boundary ${boundaryArn}, not its class's`);
            }
            permissionsBoundary = { arn: boundaryArn, document: boundaryDocument(env, target.accountId) };
        }
        return {
            id: roleName.replace(prefix, "").replace(/-role$/, ""),
            kind: isFunction ? "function" : "tool",
            roleName,
            roleArn: s.arn,
            trustPolicy: parse(s.assumeRolePolicy),
            policies: rolePolicies
                .filter((p) => state(p).role === roleName)
                .map((p) => ({ name: state(p).name as string, document: parse(state(p).policy) })),
            ...(permissionsBoundary ? { permissionsBoundary } : {}),
        };
    });

    const out: Resource[] = [];
    const keyArnOf = (id: string | undefined): string | undefined => {
        if (!id) {
            return undefined;
        }
        const key = ofType(resources, "aws:kms/key:Key").find((k) => state(k).arn === id || state(k).keyId === id);
        if (!key) {
            throw new Error(`unknown KMS key ${id}`);
        }
        return state(key).arn;
    };

    for (const key of ofType(resources, "aws:kms/key:Key")) {
        const alias = ofType(resources, "aws:kms/alias:Alias").find((a) => state(a).targetKeyId === state(key).keyId);
        out.push({ kind: "kms-key", logical: key.name, name: state(key).keyId, arn: state(key).arn, policy: parse(state(key).policy), ...(alias ? { alias: state(alias).name } : {}) });
    }
    for (const bucket of ofType(resources, "aws:s3/bucket:Bucket")) {
        const name: string = state(bucket).bucket;
        const policy = single(ofType(resources, "aws:s3/bucketPolicy:BucketPolicy").filter((p) => state(p).bucket === name), `policy of ${name}`);
        const sse = single(
            ofType(resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").filter((p) => state(p).bucket === name),
            `encryption of ${name}`,
        );
        const rule = sse ? state(sse).rules?.[0] : undefined;
        const kms = rule?.applyServerSideEncryptionByDefault?.sseAlgorithm === "aws:kms" ? keyArnOf(rule.applyServerSideEncryptionByDefault.kmsMasterKeyId) : undefined;
        out.push({
            kind: "s3-bucket",
            logical: bucket.name,
            name,
            arn: state(bucket).arn,
            ...(policy ? { policy: parse(state(policy).policy) } : {}),
            ...(kms ? { kmsKeyArn: kms, bucketKey: rule.bucketKeyEnabled === true } : {}),
        });
    }
    for (const queue of ofType(resources, "aws:sqs/queue:Queue")) {
        const s = state(queue);
        const policy = single(ofType(resources, "aws:sqs/queuePolicy:QueuePolicy").filter((p) => state(p).queueUrl === s.url), `policy of ${s.name}`);
        const kms = keyArnOf(s.kmsMasterKeyId);
        out.push({ kind: "sqs-queue", logical: queue.name, name: s.name, arn: s.arn, url: s.url, ...(policy ? { policy: parse(state(policy).policy) } : {}), ...(kms ? { kmsKeyArn: kms } : {}) });
    }
    for (const topic of ofType(resources, "aws:sns/topic:Topic")) {
        const s = state(topic);
        const policy = single(ofType(resources, "aws:sns/topicPolicy:TopicPolicy").filter((p) => state(p).arn === s.arn), `policy of ${s.name}`);
        const kms = keyArnOf(s.kmsMasterKeyId);
        out.push({ kind: "sns-topic", logical: topic.name, name: s.name, arn: s.arn, ...(policy ? { policy: parse(state(policy).policy) } : {}), ...(kms ? { kmsKeyArn: kms } : {}) });
    }
    for (const secret of ofType(resources, "aws:secretsmanager/secret:Secret")) {
        const s = state(secret);
        const policy = single(ofType(resources, "aws:secretsmanager/secretPolicy:SecretPolicy").filter((p) => state(p).secretArn === s.arn), `policy of ${s.name}`);
        const kms = keyArnOf(s.kmsKeyId);
        out.push({ kind: "secret", logical: secret.name, name: s.name, arn: s.arn, ...(policy ? { policy: parse(state(policy).policy) } : {}), ...(kms ? { kmsKeyArn: kms } : {}) });
    }
    for (const stream of ofType(resources, "aws:kinesis/stream:Stream")) {
        const s = state(stream);
        const kms = s.encryptionType === "KMS" ? keyArnOf(s.kmsKeyId) : undefined;
        out.push({ kind: "kinesis-stream", logical: stream.name, name: s.name, arn: s.arn, ...(kms ? { kmsKeyArn: kms } : {}) });
    }
    for (const table of ofType(resources, "aws:dynamodb/table:Table")) {
        const s = state(table);
        const kms = s.serverSideEncryption?.enabled ? keyArnOf(s.serverSideEncryption.kmsKeyArn) : undefined;
        out.push({ kind: "dynamodb-table", logical: table.name, name: s.name, arn: s.arn, ...(kms ? { kmsKeyArn: kms } : {}) });
    }
    for (const group of ofType(resources, "aws:cloudwatch/logGroup:LogGroup")) {
        const s = state(group);
        const kms = keyArnOf(s.kmsKeyId);
        out.push({ kind: "log-group", logical: group.name, name: s.name, arn: s.arn, ...(kms ? { kmsKeyArn: kms } : {}) });
    }
    for (const fn of functions) {
        const s = state(fn);
        const byFunction = (r: Registered) => [s.name, s.arn].includes(state(r).functionName ?? state(r).function);
        const permissions = ofType(resources, "aws:lambda/permission:Permission").filter(byFunction);
        const statements = permissions.map((p) => {
            const ps = state(p);
            const condition: Record<string, Record<string, string>> = {};
            if (ps.sourceArn) {
                condition.ArnLike = { "AWS:SourceArn": ps.sourceArn };
            }
            if (ps.sourceAccount) {
                condition.StringEquals = { "AWS:SourceAccount": ps.sourceAccount };
            }
            return {
                Sid: ps.statementId ?? p.name,
                Effect: "Allow" as const,
                Principal: { Service: ps.principal },
                Action: ps.action,
                Resource: s.arn,
                ...(Object.keys(condition).length > 0 ? { Condition: condition } : {}),
            };
        });
        const logGroup = ofType(resources, "aws:cloudwatch/logGroup:LogGroup").find((g) => state(g).name === s.loggingConfig?.logGroup);
        const invokeConfig = single(ofType(resources, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig").filter(byFunction), `invoke config of ${s.name}`);
        out.push({
            kind: "lambda-function",
            logical: fn.name,
            name: s.name,
            arn: s.arn,
            ...(statements.length > 0 ? { policy: { Version: "2012-10-17", Statement: statements } } : {}),
            function: {
                roleArn: s.role,
                tracing: s.tracingConfig?.mode === "Active",
                ...(s.vpcConfig
                    ? {
                          vpc: {
                              subnetArns: (s.vpcConfig.subnetIds as string[]).map((id) => arnOfId(resources, "aws:ec2/subnet:Subnet", id)),
                              securityGroupArns: (s.vpcConfig.securityGroupIds as string[]).map((id) => arnOfId(resources, "aws:ec2/securityGroup:SecurityGroup", id)),
                          },
                      }
                    : {}),
                ...(logGroup ? { logGroupArn: state(logGroup).arn } : {}),
                eventSources: ofType(resources, "aws:lambda/eventSourceMapping:EventSourceMapping")
                    .filter(byFunction)
                    .map((m) => ({
                        sourceArn: state(m).eventSourceArn,
                        ...(state(m).destinationConfig?.onFailure?.destinationArn ? { onFailureArn: state(m).destinationConfig.onFailure.destinationArn } : {}),
                    })),
                ...(invokeConfig?.state.destinationConfig?.onFailure?.destination ? { asyncOnFailureArn: invokeConfig.state.destinationConfig.onFailure.destination } : {}),
            },
        });
    }

    for (const r of out) {
        const registered = resources.find((x) => x.name === r.logical && x.custom);
        r.tags = { ...defaultTags(env), ...(registered?.inputs.tags ?? {}) };
    }
    const model = { policiesOf: env.name, stack: target.stack, accountId: target.accountId, region: target.region, partition: "aws", principals, resources: out };
    return { ...model, platform: platformRequests(model) };
}

/**
 * Runs the program for `environment`'s file, with its name, account and region replaced by the
 * target's, and renders the model.
 */
export async function renderModel(environment: PolicyEnvironment, target: Target): Promise<Model> {
    const base = loadEnvironment(POLICY_ENVIRONMENTS[environment]);
    const env: Environment = { ...base, name: target.stack, region: target.region };
    const { resources } = await runUnderMocks(
        PROJECT,
        target.stack,
        { accountId: target.accountId, region: target.region, ids: target.placeholders ? PLACEHOLDER_IDS : TEST_IDS },
        async () =>
            (await createPipeline({ env, artifacts: renderArtifacts(), gitSha: "render", forLocalEmulator: target.stack === "local" })) as unknown as Record<
                string,
                unknown
            >,
    );
    const model = { ...modelFrom(resources, env, target), policiesOf: environment };
    if (target.stack === LOCAL_STACK) {
        // The local stack has no bootstrap stack, so the program names no boundary for its roles;
        // they carry the boundary of the class they emulate, addressed to the local names.
        const boundary = {
            arn: classBoundaryArn(env.project, LOCAL_STACK as DeployedClass, target.accountId, "aws"),
            document: boundaryDocument(env, target.accountId, LOCAL_STACK as DeployedClass),
        };
        for (const p of model.principals) {
            p.permissionsBoundary ??= boundary;
        }
    }
    return model;
}

/** The stack name the local emulator's resources carry (`environments/local.toml`). */
const LOCAL_STACK = "local";

/** The committed rendering of `environment`'s policies for the local emulator. */
export function localModelPath(environment: PolicyEnvironment): string {
    return path.join(LOCAL_MODELS_DIR, `${environment}.json`);
}

export function serialise(model: Model): string {
    return `${JSON.stringify(model, null, 2)}\n`;
}

/** Writes (or, with `check`, compares) the local renderings; returns the files that differ. */
export async function writeLocalModels(check: boolean): Promise<string[]> {
    const stale: string[] = [];
    for (const environment of Object.keys(POLICY_ENVIRONMENTS) as PolicyEnvironment[]) {
        const text = serialise(await renderModel(environment, localTarget()));
        const file = localModelPath(environment);
        const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
        if (current !== text) {
            stale.push(file);
            if (!check) {
                fs.mkdirSync(path.dirname(file), { recursive: true });
                fs.writeFileSync(file, text);
            }
        }
    }
    return stale;
}
