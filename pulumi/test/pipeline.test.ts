// The program under mocks, once per stack flavour: dev and prod (provisioned; VPC, access logging,
// CloudTrail, retention, alarm e-mail) and pr-42 (on-demand preview stack, none of those).

import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";
import { parse as parseToml } from "smol-toml";

import { loadEnvironment } from "../src/config";
import { createPipeline } from "../src/pipeline";
import { expressedSettings, scheduleExpression } from "../src/settings";
import { EMF_DIMENSION, EMF_NAMESPACE, EMITTED } from "../src/components/observability";

/** What the dashboard charts for the stream processor and the transformer, side by side. */
const CHARTED = ["RecordsReceived", "RecordsValid", "RecordsQuarantined", "RecordsFailed", "ObjectsWritten", "BytesWritten", "DuplicatesDropped", "IngestLagMs", "DurationMs", "ColdStart"];
import { endpointServices, NOT_CALLED_FROM_THE_VPC, subnetCidr, VPC_ENDPOINTS } from "../src/components/network";
import { ACCOUNT_ID, GIT_SHA, artifacts, deploy, ofType, one, statements, type Deployment, type Registered } from "./harness";
import { isWildcardOnlyAction, runSimulation } from "@cloud-copilot/iam-simulate";
import { RESOURCE_WILDCARD_ACTIONS } from "../policy/rules";

const TYPES = {
    provider: "pulumi:providers:aws",
    stream: "aws:kinesis/stream:Stream",
    bucket: "aws:s3/bucket:Bucket",
    sse: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    pab: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    versioning: "aws:s3/bucketVersioning:BucketVersioning",
    lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    bucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
    logging: "aws:s3/bucketLogging:BucketLogging",
    notification: "aws:s3/bucketNotification:BucketNotification",
    table: "aws:dynamodb/table:Table",
    key: "aws:kms/key:Key",
    secret: "aws:secretsmanager/secret:Secret",
    secretVersion: "aws:secretsmanager/secretVersion:SecretVersion",
    fn: "aws:lambda/function:Function",
    esm: "aws:lambda/eventSourceMapping:EventSourceMapping",
    invokeConfig: "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
    permission: "aws:lambda/permission:Permission",
    logGroup: "aws:cloudwatch/logGroup:LogGroup",
    role: "aws:iam/role:Role",
    rolePolicy: "aws:iam/rolePolicy:RolePolicy",
    queue: "aws:sqs/queue:Queue",
    queuePolicy: "aws:sqs/queuePolicy:QueuePolicy",
    topic: "aws:sns/topic:Topic",
    subscription: "aws:sns/topicSubscription:TopicSubscription",
    alarm: "aws:cloudwatch/metricAlarm:MetricAlarm",
    dashboard: "aws:cloudwatch/dashboard:Dashboard",
    glueDb: "aws:glue/catalogDatabase:CatalogDatabase",
    glueTable: "aws:glue/catalogTable:CatalogTable",
    vpc: "aws:ec2/vpc:Vpc",
    subnet: "aws:ec2/subnet:Subnet",
    securityGroup: "aws:ec2/securityGroup:SecurityGroup",
    endpoint: "aws:ec2/vpcEndpoint:VpcEndpoint",
    trail: "aws:cloudtrail/trail:Trail",
    eventRule: "aws:cloudwatch/eventRule:EventRule",
    eventTarget: "aws:cloudwatch/eventTarget:EventTarget",
};

const byName = (name: string) => (r: Registered) => r.inputs.name === name;
const fnNamed = (d: Deployment, name: string) => one(d, TYPES.fn, byName(name)).inputs;
const allowActions = (policy: string): string[] =>
    statements(policy)
        .filter((s) => s.Effect === "Allow")
        .flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));

const flavours: Record<string, Deployment> = {};

describe("pipeline under mocks", function () {
    before(async () => {
        for (const stack of ["dev", "prod", "pr-42"]) {
            flavours[stack] = await deploy(stack);
        }
    });
    const d = (stack: string): Deployment => flavours[stack] as Deployment;

    for (const stack of ["dev", "prod", "pr-42"]) {
        describe(stack, () => {
            it("names every resource after project and environment", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                assert.equal(one(x, TYPES.stream).inputs.name, `${p}-events`);
                const buckets = ofType(x, TYPES.bucket).map((b) => b.inputs.bucket);
                assert.ok(buckets.includes(`${p}-raw-${ACCOUNT_ID}`));
                assert.ok(buckets.includes(`${p}-processed-${ACCOUNT_ID}`));
                assert.equal(one(x, TYPES.table).inputs.name, `${p}-metadata`);
                fnNamed(x, `${p}-stream-processor`);
                fnNamed(x, `${p}-transformer`);
                fnNamed(x, `${p}-auditor`);
                assert.equal(one(x, TYPES.eventRule).inputs.name, `${p}-auditor-schedule`);
                assert.deepEqual(ofType(x, TYPES.role).map((r) => r.inputs.name).sort(), [
                    `${p}-auditor-role`,
                    `${p}-operator`,
                    `${p}-producer`,
                    `${p}-stream-processor-role`,
                    `${p}-transformer-role`,
                ]);
                assert.deepEqual(ofType(x, TYPES.queue).map((q) => q.inputs.name).sort(), [`${p}-stream-dlq`, `${p}-transform-dlq`]);
                assert.equal(one(x, TYPES.topic).inputs.name, `${p}-alarms`);
                assert.equal(one(x, TYPES.secret).inputs.name, `${p}/pii-hmac-key`);
                assert.deepEqual(ofType(x, TYPES.logGroup).map((g) => g.inputs.name).sort(), [
                    `/aws/lambda/${p}-auditor`,
                    `/aws/lambda/${p}-stream-processor`,
                    `/aws/lambda/${p}-transformer`,
                ]);
                assert.equal(one(x, TYPES.glueDb).inputs.name, p.replace(/-/g, "_"));
                for (const b of buckets) {
                    assert.ok(b.length <= 63, `${b} is a valid bucket name length`);
                }
            });

            it("tags everything through the provider's default tags and uses that provider everywhere", () => {
                const x = d(stack);
                const provider = one(x, TYPES.provider);
                assert.equal(provider.inputs.region, x.env.region);
                // No commit among the tags: it would change every resource on every deployment.
                assert.deepEqual(JSON.parse(provider.inputs.defaultTags).tags ?? provider.inputs.defaultTags.tags, {
                    ...x.env.tags,
                    project: "eventpipe",
                    environment: stack,
                });
                for (const r of x.resources.filter((r) => r.custom && r.type.startsWith("aws:"))) {
                    assert.ok(r.provider?.includes("::pulumi:providers:aws::aws::"), `${r.type} ${r.name} uses the explicit provider`);
                }
            });

            it("parents every resource to a component", () => {
                for (const r of d(stack).resources.filter((r) => r.custom && r.type.startsWith("aws:"))) {
                    assert.match(r.urn, /::eventpipe:pipeline:[A-Za-z]+(\$[^:]+)*\$aws:/, `${r.type} ${r.name}: ${r.urn}`);
                }
            });

            it("encrypts the stream with KMS and keeps records as configured", () => {
                const x = d(stack);
                const s = one(x, TYPES.stream).inputs;
                assert.equal(s.encryptionType, "KMS");
                assert.match(s.kmsKeyId, /^arn:aws:kms:/);
                assert.equal(s.retentionPeriod, x.env.stream.retention_hours);
                if (x.env.stream.mode === "provisioned") {
                    assert.equal(s.shardCount, x.env.stream.shards);
                    assert.equal(s.streamModeDetails.streamMode, "PROVISIONED");
                } else {
                    assert.equal(s.shardCount, undefined);
                    assert.equal(s.streamModeDetails.streamMode, "ON_DEMAND");
                }
            });

            it("maps the stream to the stream processor with the file's settings and a DLQ", () => {
                const x = d(stack);
                const esm = one(x, TYPES.esm).inputs;
                const m = x.env.event_source_mapping;
                assert.equal(esm.batchSize, m.batch_size);
                assert.equal(esm.maximumBatchingWindowInSeconds, m.maximum_batching_window_seconds);
                assert.equal(esm.startingPosition, m.starting_position);
                assert.equal(esm.parallelizationFactor, m.parallelization_factor);
                assert.equal(esm.bisectBatchOnFunctionError, m.bisect_batch_on_function_error);
                assert.equal(esm.maximumRetryAttempts, m.maximum_retry_attempts);
                assert.equal(esm.maximumRecordAgeInSeconds, m.maximum_record_age_seconds);
                assert.deepEqual(esm.functionResponseTypes, ["ReportBatchItemFailures"]);
                assert.equal(esm.eventSourceArn, `arn:aws:kinesis:${x.env.region}:${ACCOUNT_ID}:stream/eventpipe-${stack}-events`);
                assert.equal(esm.functionName, `arn:aws:lambda:${x.env.region}:${ACCOUNT_ID}:function:eventpipe-${stack}-stream-processor`);
                assert.equal(esm.destinationConfig.onFailure.destinationArn, `arn:aws:sqs:${x.env.region}:${ACCOUNT_ID}:eventpipe-${stack}-stream-dlq`);
            });

            it("deploys every function from the artifact manifest with the file's sizing", async () => {
                const x = d(stack);
                const a = artifacts();
                for (const [key, settings] of [
                    ["stream-processor", x.env.stream_processor],
                    ["transformer", x.env.transformer],
                    ["auditor", x.env.auditor],
                ] as const) {
                    const f = fnNamed(x, `eventpipe-${stack}-${key}`);
                    assert.equal(f.runtime, "provided.al2023");
                    assert.deepEqual(f.architectures, ["arm64"]);
                    assert.equal(f.handler, "bootstrap");
                    assert.equal(f.memorySize, settings.memory_mb);
                    assert.equal(f.timeout, settings.timeout_seconds);
                    assert.equal(f.reservedConcurrentExecutions, settings.reserved_concurrency ?? undefined);
                    assert.equal(f.sourceCodeHash, a.functions[key].sourceCodeHash);
                    assert.equal(f.sourceCodeHash, Buffer.from(a.functions[key].sha256, "hex").toString("base64"));
                    assert.ok(pulumi.asset.FileArchive.isInstance(f.code), "the code is a FileArchive of the zip");
                    assert.equal(await (f.code as pulumi.asset.FileArchive).path, a.functions[key].zipPath);
                    assert.deepEqual(f.loggingConfig, { logFormat: "JSON", logGroup: `/aws/lambda/eventpipe-${stack}-${key}` });
                    assert.equal(f.tracingConfig.mode, x.env.observability.tracing ? "Active" : "PassThrough");
                    assert.match(f.role, new RegExp(`role/eventpipe-${stack}-${key}-role$`));
                }
                assert.deepEqual(x.outputs.artifactDigests, {
                    "stream-processor": a.functions["stream-processor"].sha256,
                    transformer: a.functions.transformer.sha256,
                    auditor: a.functions.auditor.sha256,
                });
                assert.equal(x.outputs.gitSha, GIT_SHA);
            });

            it("passes the runtime contract to the functions as environment variables", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                const common = {
                    RAW_BUCKET: `${p}-raw-${ACCOUNT_ID}`,
                    METADATA_TABLE: `${p}-metadata`,
                    METADATA_TTL_DAYS: String(x.env.storage.metadata_ttl_days),
                    PIPELINE_ENV: stack,
                };
                assert.deepEqual(fnNamed(x, `${p}-stream-processor`).environment.variables, {
                    ...common,
                    RUST_LOG: x.env.stream_processor.log_level,
                });
                assert.deepEqual(fnNamed(x, `${p}-transformer`).environment.variables, {
                    ...common,
                    PROCESSED_BUCKET: `${p}-processed-${ACCOUNT_ID}`,
                    HMAC_SECRET_ID: `${p}/pii-hmac-key`,
                    RUST_LOG: x.env.transformer.log_level,
                    LEASE_SECONDS: String(x.env.transformer.timeout_seconds + 5),
                    // The artifact's digest: what a replay compares (services/transformer).
                    TRANSFORM_VERSION: artifacts().functions.transformer.sha256,
                });
                // The auditor's settings (services/auditor Settings::from_env); it writes no metadata,
                // so it needs no TTL.
                assert.deepEqual(fnNamed(x, `${p}-auditor`).environment.variables, {
                    RAW_BUCKET: `${p}-raw-${ACCOUNT_ID}`,
                    METADATA_TABLE: `${p}-metadata`,
                    TRANSFORMER_FUNCTION: `${p}-transformer`,
                    STUCK_AFTER_MINUTES: String(x.env.storage.stuck_after_minutes),
                    AUDIT_PERIOD_MINUTES: String(x.env.auditor.period_minutes),
                    LOOKBACK_HOURS: String(x.env.auditor.lookback_hours),
                    PIPELINE_ENV: stack,
                    RUST_LOG: x.env.auditor.log_level,
                });
            });

            it("gives each function a KMS-encrypted log group with the file's retention", () => {
                const x = d(stack);
                for (const g of ofType(x, TYPES.logGroup)) {
                    assert.equal(g.inputs.retentionInDays, x.env.observability.log_retention_days);
                    assert.match(g.inputs.kmsKeyId, /^arn:aws:kms:/);
                }
            });

            it("invokes the transformer on raw/ objects only, scoped to the bucket and account", () => {
                const x = d(stack);
                const n = one(x, TYPES.notification).inputs;
                assert.equal(n.bucket, `eventpipe-${stack}-raw-${ACCOUNT_ID}`);
                assert.equal(n.lambdaFunctions.length, 1);
                assert.deepEqual(n.lambdaFunctions[0].events, ["s3:ObjectCreated:*"]);
                assert.equal(n.lambdaFunctions[0].filterPrefix, "raw/");
                const perm = one(x, TYPES.permission, (r) => r.inputs.function === `eventpipe-${stack}-transformer`).inputs;
                assert.equal(perm.principal, "s3.amazonaws.com");
                assert.equal(perm.action, "lambda:InvokeFunction");
                assert.equal(perm.sourceArn, `arn:aws:s3:::eventpipe-${stack}-raw-${ACCOUNT_ID}`);
                assert.equal(perm.sourceAccount, ACCOUNT_ID);
                const inv = one(x, TYPES.invokeConfig).inputs;
                assert.equal(inv.maximumRetryAttempts, x.env.transformer_async.maximum_retry_attempts);
                assert.equal(inv.maximumEventAgeInSeconds, x.env.transformer_async.maximum_event_age_seconds);
                assert.equal(inv.destinationConfig.onFailure.destination, `arn:aws:sqs:${x.env.region}:${ACCOUNT_ID}:eventpipe-${stack}-transform-dlq`);
            });

            it("runs the auditor on an EventBridge schedule of the file's period, and lets only that rule invoke it", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                const minutes = x.env.auditor.period_minutes;
                const rule = one(x, TYPES.eventRule).inputs;
                assert.equal(rule.name, `${p}-auditor-schedule`);
                assert.equal(rule.scheduleExpression, minutes === 1 ? "rate(1 minute)" : `rate(${minutes} minutes)`);
                assert.equal(rule.eventBusName, undefined, "the default event bus");
                const ruleArn = `arn:aws:events:${x.env.region}:${ACCOUNT_ID}:rule/${p}-auditor-schedule`;
                const fnArn = `arn:aws:lambda:${x.env.region}:${ACCOUNT_ID}:function:${p}-auditor`;
                const target = one(x, TYPES.eventTarget).inputs;
                assert.equal(target.rule, `${p}-auditor-schedule`);
                assert.equal(target.arn, fnArn);
                assert.equal(target.roleArn, undefined, "EventBridge invokes a function through its resource policy");
                // The scheduled event itself, whose `time` the run audits as of.
                assert.deepEqual([target.input, target.inputPath, target.inputTransformer], [undefined, undefined, undefined]);
                const perm = one(x, TYPES.permission, (r) => r.inputs.function === `${p}-auditor`).inputs;
                assert.equal(perm.principal, "events.amazonaws.com");
                assert.equal(perm.action, "lambda:InvokeFunction");
                assert.equal(perm.sourceArn, ruleArn);
                // The operator role invokes the stream processor and the transformer, not the auditor.
                const operator = one(x, TYPES.rolePolicy, (r) => r.inputs.name === `${p}-operator-permissions`).inputs.policy;
                assert.ok(!JSON.stringify(statements(operator)).includes(`${p}-auditor`));
                // Lambda's default asynchronous retries apply: the next run repeats a failed one anyway.
                assert.deepEqual(ofType(x, TYPES.invokeConfig).map((c) => c.inputs.functionName), [`${p}-transformer`]);
            });

            it("grants the auditor exactly what it asks for: the pending index, metadata items, the raw/ listing and heads, the transformer", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                const { region } = x.env;
                const raw = `arn:aws:s3:::${p}-raw-${ACCOUNT_ID}`;
                const table = `arn:aws:dynamodb:${region}:${ACCOUNT_ID}:table/${p}-metadata`;
                const policy = statements(one(x, TYPES.rolePolicy, (r) => r.inputs.name === `${p}-auditor-permissions`).inputs.policy);
                const own = policy.filter((s) => !["WriteOwnLogs", "WriteTraces"].includes(s.Sid) && !/Vpc/.test(s.Sid));
                assert.deepEqual(own, [
                    { Sid: "QueryPendingIndex", Effect: "Allow", Action: "dynamodb:Query", Resource: `${table}/index/pending-by-age` },
                    { Sid: "ReadMetadataItems", Effect: "Allow", Action: "dynamodb:GetItem", Resource: table },
                    { Sid: "ListRawPrefix", Effect: "Allow", Action: "s3:ListBucket", Resource: raw, Condition: { StringLike: { "s3:prefix": "raw/*" } } },
                    { Sid: "HeadRawObjects", Effect: "Allow", Action: "s3:GetObject", Resource: `${raw}/raw/*` },
                    {
                        Sid: "RedriveToTransformer",
                        Effect: "Allow",
                        Action: "lambda:InvokeFunction",
                        Resource: `arn:aws:lambda:${region}:${ACCOUNT_ID}:function:${p}-transformer`,
                    },
                ]);
                assert.ok(!policy.some((s) => [s.Action].flat().some((a: string) => a.startsWith("kms:"))), "no key statement");
                assert.equal(policy.find((s) => s.Sid === "WriteOwnLogs").Resource, `arn:aws:logs:${region}:${ACCOUNT_ID}:log-group:/aws/lambda/${p}-auditor:log-stream:*`);
                assert.match(one(x, TYPES.role, (r) => r.inputs.name === `${p}-auditor-role`).inputs.permissionsBoundary, /:policy\/eventpipe-[a-z]+-boundary$/);
            });

            it("alarms when the auditor finds stuck objects or fails two runs in a row, one schedule period at a time", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                const period = x.env.auditor.period_minutes * 60;
                const topic = `arn:aws:sns:${x.env.region}:${ACCOUNT_ID}:${p}-alarms`;
                const alarm = (name: string) => one(x, TYPES.alarm, byName(name)).inputs;
                const stuck = alarm(`${p}-auditor-stuck-objects`);
                assert.deepEqual(
                    [stuck.namespace, stuck.metricName, stuck.dimensions, stuck.statistic, stuck.period],
                    [EMF_NAMESPACE, "StuckObjects", { Function: `${p}-auditor` }, "Maximum", period],
                );
                assert.deepEqual([stuck.comparisonOperator, stuck.threshold, stuck.evaluationPeriods], ["GreaterThanThreshold", 0, 1]);
                assert.equal(stuck.treatMissingData, "notBreaching", "a failed run emits no StuckObjects");
                assert.match(stuck.alarmDescription, /Runbook: docs\/operations\.md#stuck-raw-objects$/);
                const errors = alarm(`${p}-auditor-errors`);
                assert.deepEqual(
                    [errors.namespace, errors.metricName, errors.dimensions, errors.statistic, errors.period],
                    ["AWS/Lambda", "Errors", { FunctionName: `${p}-auditor` }, "Sum", period],
                );
                assert.deepEqual([errors.threshold, errors.evaluationPeriods, errors.datapointsToAlarm], [0, 2, 2]);
                assert.match(errors.alarmDescription, /Runbook: docs\/operations\.md#auditor-errors$/);
                for (const a of [stuck, errors]) {
                    assert.deepEqual([a.alarmActions, a.okActions], [[topic], [topic]]);
                }
            });

            it("keeps dead letters 14 days in KMS-encrypted queues that only the function roles may write", () => {
                const x = d(stack);
                for (const q of ofType(x, TYPES.queue)) {
                    assert.equal(q.inputs.messageRetentionSeconds, 1209600);
                    assert.match(q.inputs.kmsMasterKeyId, /^arn:aws:kms:/);
                }
                for (const qp of ofType(x, TYPES.queuePolicy)) {
                    const [allow, deny] = statements(qp.inputs.policy);
                    assert.equal(allow.Action, "sqs:SendMessage");
                    assert.match(allow.Principal.AWS, new RegExp(`^arn:aws:iam::${ACCOUNT_ID}:role/eventpipe-${stack}-`));
                    assert.equal(deny.Effect, "Deny");
                    assert.equal(deny.Condition.Bool["aws:SecureTransport"], "false");
                }
            });

            it("builds the buckets: SSE-KMS with a bucket key, versioning, public access block, TLS-only, lifecycle", () => {
                const x = d(stack);
                const s = x.env.storage;
                const raw = `eventpipe-${stack}-raw-${ACCOUNT_ID}`;
                const processed = `eventpipe-${stack}-processed-${ACCOUNT_ID}`;
                for (const name of [raw, processed]) {
                    const bucket = one(x, TYPES.bucket, (b) => b.inputs.bucket === name).inputs;
                    assert.equal(bucket.forceDestroy, !s.retain_on_delete);
                    const sse = one(x, TYPES.sse, (r) => r.inputs.bucket === name).inputs.rules[0];
                    assert.equal(sse.applyServerSideEncryptionByDefault.sseAlgorithm, "aws:kms");
                    assert.match(sse.applyServerSideEncryptionByDefault.kmsMasterKeyId, /^arn:aws:kms:/);
                    assert.equal(sse.bucketKeyEnabled, true);
                    assert.equal(one(x, TYPES.versioning, (r) => r.inputs.bucket === name).inputs.versioningConfiguration.status, "Enabled");
                    const pab = one(x, TYPES.pab, (r) => r.inputs.bucket === name).inputs;
                    for (const k of ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]) {
                        assert.equal(pab[k], true, k);
                    }
                    const deny = statements(one(x, TYPES.bucketPolicy, (r) => r.inputs.bucket === name).inputs.policy)[0];
                    assert.equal(deny.Effect, "Deny");
                    assert.deepEqual(deny.Resource, [`arn:aws:s3:::${name}`, `arn:aws:s3:::${name}/*`]);
                }
                const rules = (name: string) =>
                    Object.fromEntries(one(x, TYPES.lifecycle, (r) => r.inputs.bucket === name).inputs.rules.map((r: any) => [r.id, r]));
                const rawRules = rules(raw);
                assert.deepEqual(rawRules["raw-to-intelligent-tiering"].filter, { prefix: "raw/" });
                assert.deepEqual(rawRules["raw-to-intelligent-tiering"].transitions, [
                    { days: s.intelligent_tiering_after_days, storageClass: "INTELLIGENT_TIERING" },
                ]);
                assert.deepEqual(rawRules["expire-quarantine"].filter, { prefix: "quarantine/" });
                assert.equal(rawRules["expire-quarantine"].expiration.days, s.quarantine_expiry_days);
                assert.equal(rawRules["expire-noncurrent-versions"].noncurrentVersionExpiration.noncurrentDays, s.noncurrent_version_expiry_days);
                const processedRules = rules(processed);
                assert.deepEqual(processedRules["processed-to-intelligent-tiering"].filter, { prefix: "processed/" });
                assert.equal(processedRules["expire-quarantine"], undefined);
                assert.equal(processedRules["expire-noncurrent-versions"].noncurrentVersionExpiration.noncurrentDays, s.noncurrent_version_expiry_days);
            });

            it("logs bucket access only when the file asks for it", () => {
                const x = d(stack);
                const logging = ofType(x, TYPES.logging);
                if (x.env.storage.access_logging) {
                    const logBucket = `eventpipe-${stack}-access-logs-${ACCOUNT_ID}`;
                    assert.deepEqual(logging.map((l) => l.inputs.bucket).sort(), [
                        `eventpipe-${stack}-processed-${ACCOUNT_ID}`,
                        `eventpipe-${stack}-raw-${ACCOUNT_ID}`,
                    ]);
                    for (const l of logging) {
                        assert.equal(l.inputs.targetBucket, logBucket);
                        assert.equal(l.inputs.targetPrefix, `${l.inputs.bucket}/`);
                    }
                    // S3 delivers access logs only to SSE-S3 buckets.
                    const sse = one(x, TYPES.sse, (r) => r.inputs.bucket === logBucket).inputs.rules[0];
                    assert.equal(sse.applyServerSideEncryptionByDefault.sseAlgorithm, "AES256");
                    assert.equal(x.outputs.accessLogBucketName, logBucket);
                } else {
                    assert.equal(logging.length, 0);
                    assert.equal(x.outputs.accessLogBucketName, undefined);
                }
            });

            it("creates the metadata table with its sparse pending-by-age index (keys only), CMK encryption, PITR and TTL", () => {
                const x = d(stack);
                const t = one(x, TYPES.table).inputs;
                assert.equal(t.billingMode, "PAY_PER_REQUEST");
                assert.equal(t.hashKey, "raw_key");
                assert.deepEqual(t.attributes, [
                    { name: "raw_key", type: "S" },
                    { name: "pending", type: "S" },
                    { name: "raw_written_at", type: "S" },
                ]);
                assert.deepEqual(t.globalSecondaryIndexes, [
                    {
                        name: "pending-by-age",
                        keySchemas: [
                            { attributeName: "pending", keyType: "HASH" },
                            { attributeName: "raw_written_at", keyType: "RANGE" },
                        ],
                        // Keys only: what the stuck-object queries read, and no index write for
                        // a lease or an output set update of the base item.
                        projectionType: "KEYS_ONLY",
                    },
                ]);
                assert.equal(t.serverSideEncryption.enabled, true);
                assert.match(t.serverSideEncryption.kmsKeyArn, /^arn:aws:kms:/);
                assert.deepEqual(t.pointInTimeRecovery, { enabled: true });
                assert.deepEqual(t.ttl, { attributeName: "expires_at", enabled: true });
                assert.equal(t.deletionProtectionEnabled, x.env.storage.retain_on_delete);
            });

            it("creates the HMAC secret without a value", () => {
                const x = d(stack);
                const s = one(x, TYPES.secret).inputs;
                assert.match(s.kmsKeyId, /^arn:aws:kms:/);
                assert.equal(s.recoveryWindowInDays, x.env.storage.retain_on_delete ? 30 : 0);
                assert.equal(ofType(x, TYPES.secretVersion).length, 0);
                assert.ok(!x.resources.some((r) => r.type.startsWith("random:")));
            });

            it("uses one rotating customer managed key", () => {
                const x = d(stack);
                const k = one(x, TYPES.key).inputs;
                assert.equal(k.enableKeyRotation, true);
                assert.equal(k.deletionWindowInDays, x.env.storage.retain_on_delete ? 30 : 7);
                const sids = statements(k.policy).map((s) => s.Sid);
                assert.ok(sids.includes("CloudWatchLogsEncryptsPipelineLogGroups"));
                assert.ok(sids.includes("CloudWatchAlarmsPublishToEncryptedTopic"));
                assert.equal(sids.includes("CloudTrailEncryptsDataEventLogs"), x.env.network.cloudtrail);
            });

            it("grants each role explicit actions only", () => {
                const x = d(stack);
                const sp = one(x, TYPES.rolePolicy, (r) => r.inputs.name === `eventpipe-${stack}-stream-processor-permissions`).inputs.policy;
                const tr = one(x, TYPES.rolePolicy, (r) => r.inputs.name === `eventpipe-${stack}-transformer-permissions`).inputs.policy;
                const common = ["kms:Decrypt", "kms:GenerateDataKey", "logs:CreateLogStream", "logs:PutLogEvents"];
                const tracing = x.env.observability.tracing ? ["xray:PutTraceSegments", "xray:PutTelemetryRecords"] : [];
                const vpc = x.env.network.vpc
                    ? ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
                    : [];
                assert.deepEqual(allowActions(sp).sort(), [
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "dynamodb:UpdateItem",
                    "sqs:SendMessage",
                    ...common,
                    ...tracing,
                    ...vpc,
                ].sort());
                assert.deepEqual(allowActions(tr).sort(), [
                    "s3:GetObject",
                    "s3:ListBucket",
                    "s3:GetObject",
                    "s3:ListBucket",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "dynamodb:GetItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "secretsmanager:GetSecretValue",
                    "sqs:SendMessage",
                    ...common,
                    ...tracing,
                    ...vpc,
                ].sort());
                // The auditor reads and invokes: no write, and no key (a HEAD decrypts nothing).
                const au = one(x, TYPES.rolePolicy, (r) => r.inputs.name === `eventpipe-${stack}-auditor-permissions`).inputs.policy;
                assert.deepEqual(allowActions(au).sort(), [
                    "dynamodb:Query",
                    "dynamodb:GetItem",
                    "s3:ListBucket",
                    "s3:GetObject",
                    "lambda:InvokeFunction",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    ...tracing,
                    ...vpc,
                ].sort());
                const raw = `arn:aws:s3:::eventpipe-${stack}-raw-${ACCOUNT_ID}`;
                const write = statements(sp).find((s) => s.Sid === "WriteRawAndQuarantineObjects");
                assert.deepEqual(write.Resource, [`${raw}/raw/*`, `${raw}/quarantine/*`]);
                const list = statements(tr).find((s) => s.Sid === "ListRawPrefix");
                assert.deepEqual(list.Condition, { StringLike: { "s3:prefix": "raw/*" } });
                // The owner rule reads overlapping objects' outputs, and may answer 404 for one.
                const processed = `arn:aws:s3:::eventpipe-${stack}-processed-${ACCOUNT_ID}`;
                assert.deepEqual(
                    statements(tr).filter((s) => ["ReadProcessedObjects", "ListProcessedPrefix"].includes(s.Sid)).map((s) => [s.Action, s.Resource]),
                    [
                        ["s3:GetObject", `${processed}/processed/*`],
                        ["s3:ListBucket", processed],
                    ],
                );
            });

            it("alarms on error rate, throttles, iterator age and DLQ depth, to the topic, both ways", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                const alarms: Record<string, any> = Object.fromEntries(ofType(x, TYPES.alarm).map((a) => [a.inputs.name, a.inputs]));
                assert.deepEqual(Object.keys(alarms).sort(), [
                    `${p}-auditor-errors`,
                    `${p}-auditor-stuck-objects`,
                    `${p}-events-iterator-age`,
                    `${p}-stream-dlq-not-empty`,
                    `${p}-stream-processor-error-rate`,
                    `${p}-stream-processor-throttles`,
                    `${p}-transform-dlq-not-empty`,
                    `${p}-transformer-error-rate`,
                    `${p}-transformer-throttles`,
                ]);
                const topic = `arn:aws:sns:${x.env.region}:${ACCOUNT_ID}:${p}-alarms`;
                for (const a of Object.values(alarms)) {
                    assert.deepEqual(a.alarmActions, [topic]);
                    assert.deepEqual(a.okActions, [topic]);
                    assert.equal(a.treatMissingData, "notBreaching");
                    assert.match(a.alarmDescription, /Runbook: docs\/operations\.md#/);
                }
                const errorRate = alarms[`${p}-transformer-error-rate`];
                assert.equal(errorRate.threshold, x.env.observability.error_rate_alarm_percent);
                assert.equal(errorRate.comparisonOperator, "GreaterThanThreshold");
                const expr = errorRate.metricQueries.find((q: any) => q.returnData);
                assert.match(expr.expression, /100 \* FILL\(errors, 0\) \/ invocations/);
                assert.deepEqual(
                    errorRate.metricQueries.filter((q: any) => q.metric).map((q: any) => [q.metric.metricName, q.metric.dimensions.FunctionName]),
                    [["Errors", `${p}-transformer`], ["Invocations", `${p}-transformer`]],
                );
                assert.equal(alarms[`${p}-stream-processor-throttles`].metricName, "Throttles");
                assert.equal(alarms[`${p}-stream-processor-throttles`].threshold, 0);
                const age = alarms[`${p}-events-iterator-age`];
                assert.equal(age.metricName, "GetRecords.IteratorAgeMilliseconds");
                assert.equal(age.statistic, "Maximum");
                assert.equal(age.threshold, x.env.observability.iterator_age_alarm_seconds * 1000);
                assert.deepEqual(age.dimensions, { StreamName: `${p}-events` });
                const dlq = alarms[`${p}-stream-dlq-not-empty`];
                assert.equal(dlq.metricName, "ApproximateNumberOfMessagesVisible");
                assert.deepEqual(dlq.dimensions, { QueueName: `${p}-stream-dlq` });
            });

            it("encrypts the alarm topic and subscribes the file's email addresses", () => {
                const x = d(stack);
                assert.match(one(x, TYPES.topic).inputs.kmsMasterKeyId, /^arn:aws:kms:/);
                const subs = ofType(x, TYPES.subscription).map((s) => [s.inputs.protocol, s.inputs.endpoint]);
                assert.deepEqual(subs, x.env.observability.alarm_emails.map((e) => ["email", e]));
            });

            it("charts and alarms only on metrics the functions emit (the generated catalogue)", () => {
                const x = d(stack);
                const p = `eventpipe-${stack}`;
                const emitted = (fn: string): readonly string[] =>
                    fn === `${p}-stream-processor` ? EMITTED.streamProcessor : fn === `${p}-transformer` ? EMITTED.transformer : fn === `${p}-auditor` ? EMITTED.auditor : [];
                const body = JSON.parse(one(x, TYPES.dashboard).inputs.dashboardBody);
                const lines = body.widgets.flatMap((w: any) => w.properties.metrics ?? []).filter((l: any[]) => l[0] === EMF_NAMESPACE);
                assert.ok(lines.length > 10, "the dashboard charts the pipeline's metrics");
                const charted = lines.map((l: any[]) => [l[3], l[1]]);
                const alarmed = ofType(x, TYPES.alarm)
                    .filter((a) => a.inputs.namespace === EMF_NAMESPACE)
                    .map((a) => [a.inputs.dimensions[EMF_DIMENSION], a.inputs.metricName]);
                assert.ok(alarmed.length > 0, "an alarm watches a pipeline metric");
                for (const [fn, metric] of [...charted, ...alarmed]) {
                    // The two functions' metrics are charted side by side: a line of one that the
                    // other does not emit stays empty, a name neither emits is a mistake.
                    const ok =
                        fn === `${p}-auditor`
                            ? EMITTED.auditor.includes(metric)
                            : emitted(fn).length > 0 && (EMITTED.streamProcessor.includes(metric) || EMITTED.transformer.includes(metric));
                    assert.ok(ok, `${fn} ${metric}`);
                }
            });

            it("draws a dashboard of the stream, functions, DLQs and every pipeline metric", () => {
                const x = d(stack);
                const body = JSON.parse(one(x, TYPES.dashboard).inputs.dashboardBody);
                const lines = body.widgets.flatMap((w: any) => w.properties.metrics ?? []);
                const has = (ns: string, metric: string, value: string) =>
                    lines.some((l: any[]) => l[0] === ns && l[1] === metric && l[3] === value);
                const p = `eventpipe-${stack}`;
                for (const m of ["IncomingRecords", "IncomingBytes", "GetRecords.IteratorAgeMilliseconds"]) {
                    assert.ok(has("AWS/Kinesis", m, `${p}-events`), m);
                }
                for (const fn of [`${p}-stream-processor`, `${p}-transformer`]) {
                    for (const m of ["Invocations", "Errors", "Throttles", "Duration"]) {
                        assert.ok(has("AWS/Lambda", m, fn), `${m} ${fn}`);
                    }
                    for (const m of CHARTED) {
                        assert.ok(has(EMF_NAMESPACE, m, fn), `${m} ${fn}`);
                    }
                    const stats = lines.filter((l: any[]) => l[1] === "Duration" && l[3] === fn).map((l: any[]) => l[4].stat);
                    assert.deepEqual(stats.sort(), ["p50", "p99"]);
                }
                // The auditor: the Lambda rows, and every metric it emits at its schedule's period.
                const auditor = `${p}-auditor`;
                for (const m of ["Invocations", "Errors", "Throttles", "Duration"]) {
                    assert.ok(has("AWS/Lambda", m, auditor), `${m} ${auditor}`);
                }
                for (const m of EMITTED.auditor) {
                    assert.ok(has(EMF_NAMESPACE, m, auditor), `${m} ${auditor}`);
                }
                for (const m of CHARTED.filter((m) => !EMITTED.auditor.includes(m))) {
                    assert.ok(!has(EMF_NAMESPACE, m, auditor), `the auditor emits no ${m}`);
                }
                const auditorWidgets = body.widgets.filter((w: any) => (w.properties.metrics ?? []).some((l: any[]) => l[0] === EMF_NAMESPACE && l[3] === auditor));
                assert.ok(auditorWidgets.length > 0);
                for (const w of auditorWidgets) {
                    assert.equal(w.properties.period, x.env.auditor.period_minutes * 60, w.properties.title);
                }
                for (const q of [`${p}-stream-dlq`, `${p}-transform-dlq`]) {
                    assert.ok(has("AWS/SQS", "ApproximateNumberOfMessagesVisible", q), q);
                }
                for (const w of body.widgets.filter((w: any) => w.type === "metric")) {
                    assert.equal(w.properties.region, x.env.region);
                }
            });

            it("catalogs the processed Parquet with partition projection", () => {
                const x = d(stack);
                const t = one(x, TYPES.glueTable).inputs;
                const bucket = `eventpipe-${stack}-processed-${ACCOUNT_ID}`;
                assert.equal(t.databaseName, `eventpipe_${stack.replace("-", "_")}`);
                assert.equal(t.tableType, "EXTERNAL_TABLE");
                assert.deepEqual(t.partitionKeys.map((k: any) => [k.name, k.type]), [
                    ["event_type", "string"],
                    ["dt", "string"],
                    ["hour", "int"],
                ]);
                assert.equal(t.parameters["projection.enabled"], "true");
                assert.equal(t.parameters["projection.event_type.type"], "injected");
                assert.equal(t.parameters["projection.dt.type"], "date");
                assert.equal(t.parameters["projection.dt.format"], "yyyy-MM-dd");
                assert.equal(t.parameters["projection.hour.type"], "integer");
                assert.equal(t.parameters["projection.hour.range"], "0,23");
                assert.equal(t.parameters["projection.hour.digits"], "2");
                assert.equal(
                    t.parameters["storage.location.template"],
                    `s3://${bucket}/processed/event_type=\${event_type}/dt=\${dt}/hour=\${hour}/`,
                );
                assert.equal(t.storageDescriptor.location, `s3://${bucket}/processed/`);
                assert.match(t.storageDescriptor.serDeInfo.serializationLibrary, /ParquetHiveSerDe$/);
            });

            it("places the functions in the VPC only when the file asks for it", () => {
                const x = d(stack);
                const fns = ofType(x, TYPES.fn);
                if (x.env.network.vpc) {
                    assert.equal(ofType(x, TYPES.vpc).length, 1);
                    assert.equal(one(x, TYPES.vpc).inputs.cidrBlock, x.env.network.vpc_cidr);
                    const subnets = ofType(x, TYPES.subnet);
                    assert.equal(subnets.length, 3);
                    assert.deepEqual(subnets.map((s) => s.inputs.cidrBlock), [0, 1, 2].map((i) => subnetCidr(x.env.network.vpc_cidr as string, 4, i)));
                    assert.ok(subnets.every((s) => s.inputs.mapPublicIpOnLaunch === false));
                    const endpoints = ofType(x, TYPES.endpoint);
                    const services = (kind: string) =>
                        endpoints.filter((e) => e.inputs.vpcEndpointType === kind).map((e) => e.inputs.serviceName.split(".").pop()).sort();
                    assert.deepEqual(services("Gateway"), endpointServices("Gateway").sort());
                    assert.deepEqual(services("Interface"), endpointServices("Interface").sort());
                    assert.ok(endpoints.filter((e) => e.inputs.vpcEndpointType === "Interface").every((e) => e.inputs.privateDnsEnabled === true));
                    assert.ok(!x.resources.some((r) => r.type === "aws:ec2/natGateway:NatGateway" || r.type === "aws:ec2/internetGateway:InternetGateway"));
                    for (const f of fns) {
                        assert.equal(f.inputs.vpcConfig.subnetIds.length, 3);
                        assert.equal(f.inputs.vpcConfig.securityGroupIds.length, 1);
                    }
                    assert.equal(x.outputs.vpcId, "vpc-0123");
                } else {
                    assert.equal(ofType(x, TYPES.vpc).length, 0);
                    assert.ok(fns.every((f) => f.inputs.vpcConfig === undefined));
                    assert.equal(x.outputs.vpcId, undefined);
                }
            });

            it("records S3 data events in CloudTrail only when the file asks for it", () => {
                const x = d(stack);
                const trails = ofType(x, TYPES.trail);
                if (x.env.network.cloudtrail) {
                    const t = one(x, TYPES.trail).inputs;
                    assert.equal(t.name, `eventpipe-${stack}-data-events`);
                    assert.equal(t.s3BucketName, `eventpipe-${stack}-trail-${ACCOUNT_ID}`);
                    assert.equal(t.enableLogFileValidation, true);
                    assert.match(t.kmsKeyId, /^arn:aws:kms:/);
                    const selectors = t.advancedEventSelectors[0].fieldSelectors;
                    const arns = selectors.find((s: any) => s.field === "resources.ARN").startsWiths;
                    assert.deepEqual(arns, [
                        `arn:aws:s3:::eventpipe-${stack}-raw-${ACCOUNT_ID}/`,
                        `arn:aws:s3:::eventpipe-${stack}-processed-${ACCOUNT_ID}/`,
                    ]);
                    assert.deepEqual(selectors.find((s: any) => s.field === "eventCategory").equals, ["Data"]);
                } else {
                    assert.equal(trails.length, 0);
                }
            });

            it("lets CloudTrail deliver to its SSE-KMS bucket: no S3 Bucket Key there, so no kms:Decrypt for the trail", () => {
                const x = d(stack);
                if (!x.env.network.cloudtrail) {
                    assert.equal(ofType(x, TYPES.bucket).filter((b) => b.inputs.bucket.includes("-trail-")).length, 0);
                    return;
                }
                const trailBucket = `eventpipe-${stack}-trail-${ACCOUNT_ID}`;
                const sse = one(x, TYPES.sse, (r) => r.inputs.bucket === trailBucket).inputs.rules[0];
                assert.equal(sse.applyServerSideEncryptionByDefault.sseAlgorithm, "aws:kms");
                assert.match(sse.applyServerSideEncryptionByDefault.kmsMasterKeyId, /^arn:aws:kms:/);
                // AWS: delivery to a bucket with an S3 Bucket Key needs kms:Decrypt for CloudTrail in the
                // key policy. The program takes the other way out: per-object keys on this bucket only.
                const cloudTrailActions = statements(one(x, TYPES.key).inputs.policy)
                    .filter((s) => s.Effect === "Allow" && s.Principal?.Service === "cloudtrail.amazonaws.com")
                    .flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
                assert.ok(sse.bucketKeyEnabled !== true || cloudTrailActions.includes("kms:Decrypt"), "bucket key without kms:Decrypt");
                assert.equal(sse.bucketKeyEnabled, false);
                assert.ok(!cloudTrailActions.includes("kms:Decrypt"), "CloudTrail gets no kms:Decrypt on the data key");
                // Every other KMS bucket keeps its bucket key.
                for (const other of ofType(x, TYPES.sse).filter((r) => r.inputs.bucket !== trailBucket)) {
                    const rule = other.inputs.rules[0];
                    if (rule.applyServerSideEncryptionByDefault.sseAlgorithm === "aws:kms") {
                        assert.equal(rule.bucketKeyEnabled, true, other.inputs.bucket);
                    }
                }
            });

            it("exports every name and ARN", () => {
                const x = d(stack);
                const o = x.outputs;
                const s = expressedSettings(x.env, ACCOUNT_ID).names;
                assert.equal(o.region, x.env.region);
                assert.equal(o.environment, stack);
                assert.equal(o.streamName, s.stream);
                assert.equal(o.rawBucketName, s.raw_bucket);
                assert.equal(o.processedBucketName, s.processed_bucket);
                assert.equal(o.metadataTableName, s.metadata_table);
                assert.equal(o.pendingIndexName, "pending-by-age");
                assert.equal(o.streamProcessorFunctionName, s.stream_processor);
                assert.equal(o.transformerFunctionName, s.transformer);
                assert.equal(o.auditorFunctionName, s.auditor);
                assert.equal(o.auditorFunctionArn, `arn:aws:lambda:${x.env.region}:${ACCOUNT_ID}:function:${s.auditor}`);
                assert.equal(o.auditorLogGroup, `/aws/lambda/${s.auditor}`);
                assert.equal(o.auditorScheduleRuleName, `${s.auditor}-schedule`);
                assert.equal(o.hmacSecretName, s.hmac_secret);
                assert.equal(o.glueTableName, "events");
                assert.equal(o.glueDatabaseName, `eventpipe_${stack.replace("-", "_")}`);
                assert.match(String(o.streamDlqUrl), new RegExp(`/${s.stream_dlq}$`));
                assert.match(String(o.transformDlqUrl), new RegExp(`/${s.transform_dlq}$`));
                for (const k of ["streamArn", "streamDlqArn", "transformDlqArn", "alarmTopicArn", "streamProcessorFunctionArn", "transformerFunctionArn", "metadataTableArn", "hmacSecretArn", "kmsKeyArn"]) {
                    assert.match(String(o[k]), /^arn:aws:/, k);
                }
                assert.equal(o.artifactGitSha, GIT_SHA);
            });
        });
    }

    it("the VPC has an endpoint for exactly the AWS services the function binaries have SDK clients for", () => {
        // What the code can call: the aws-sdk-* crates the two function crates depend on, directly or
        // through the workspace's own crates. Crate → endpoint service name (com.amazonaws.<region>.<name>).
        const ENDPOINT_OF_CRATE: Record<string, string> = {
            "aws-sdk-s3": "s3",
            "aws-sdk-dynamodb": "dynamodb",
            "aws-sdk-secretsmanager": "secretsmanager",
            "aws-sdk-kinesis": "kinesis-streams",
            "aws-sdk-sqs": "sqs",
            "aws-sdk-sns": "sns",
            "aws-sdk-cloudwatch": "monitoring",
            "aws-sdk-cloudwatchlogs": "logs",
            "aws-sdk-xray": "xray",
            "aws-sdk-kms": "kms",
            "aws-sdk-sts": "sts",
            "aws-sdk-lambda": "lambda",
            "aws-sdk-glue": "glue",
        };
        const root = path.resolve(__dirname, "..", "..");
        const toml = (dir: string): any => parseToml(fs.readFileSync(path.join(root, dir, "Cargo.toml"), "utf8"));
        const members: Record<string, { path?: string }> = toml(".").workspace.dependencies;
        const crates = new Set<string>();
        const visit = (dir: string, seen = new Set<string>()): void => {
            for (const dep of Object.keys(toml(dir).dependencies ?? {})) {
                const local = members[dep]?.path;
                if (local !== undefined && !seen.has(local)) {
                    seen.add(local);
                    visit(local, seen);
                } else if (dep.startsWith("aws-sdk-")) {
                    crates.add(dep);
                }
            }
        };
        visit("services/stream-processor");
        visit("services/transformer");
        visit("services/auditor");
        assert.ok(crates.size > 0, "found the functions' SDK crates");
        const called = [...crates].map((c) => {
            assert.ok(ENDPOINT_OF_CRATE[c], `${c}: which VPC endpoint service does it call? Add it to ENDPOINT_OF_CRATE`);
            return ENDPOINT_OF_CRATE[c] as string;
        });
        const withVpc = ["dev", "prod", "pr-42"].filter((stack) => d(stack).env.network.vpc);
        assert.ok(withVpc.includes("prod"), "prod runs in a VPC");
        for (const stack of withVpc) {
            const deployed = ofType(d(stack), TYPES.endpoint).map((e) => e.inputs.serviceName.split(".").pop()).sort();
            assert.deepEqual(deployed, [...new Set(called)].sort(), stack);
        }
        // Every endpoint and every omission says why; none is both.
        for (const e of VPC_ENDPOINTS) {
            assert.ok(e.reason.length > 20, e.service);
            assert.equal(NOT_CALLED_FROM_THE_VPC[e.service], undefined, e.service);
        }
    });

    describe("network interfaces of VPC functions", () => {
        // What Lambda asks EC2 for with the function's role, per the AWS managed policy
        // AWSLambdaVPCAccessExecutionRole (v3) and the Lambda VPC page: the requests, not the grants.
        const LAMBDA_ENI_REQUESTS: { action: string; on: "new-eni" | "eni" | "subnets" | "security-group" | "*" }[] = [
            { action: "ec2:CreateNetworkInterface", on: "new-eni" },
            { action: "ec2:CreateNetworkInterface", on: "subnets" },
            { action: "ec2:CreateNetworkInterface", on: "security-group" },
            { action: "ec2:DescribeNetworkInterfaces", on: "*" },
            { action: "ec2:DescribeSubnets", on: "*" },
            { action: "ec2:DeleteNetworkInterface", on: "eni" },
            { action: "ec2:AssignPrivateIpAddresses", on: "eni" },
            { action: "ec2:UnassignPrivateIpAddresses", on: "eni" },
        ];
        const simulate = async (policy: string, action: string, resource: string, accountId = ACCOUNT_ID) => {
            const r: any = await runSimulation(
                {
                    identityPolicies: [{ name: "role-policy", policy: JSON.parse(policy) }],
                    serviceControlPolicies: [],
                    resourceControlPolicies: [],
                    resourcePolicy: undefined,
                    request: { action, principal: `arn:aws:iam::${ACCOUNT_ID}:role/r`, resource: { resource, accountId }, contextVariables: {} },
                } as any,
                {},
            );
            // An error means the request itself is invalid, for example a resource type the action does not take.
            assert.equal(r.resultType, "single", `${action} on ${resource}: ${JSON.stringify(r.errors ?? r)}`);
            return r.overallResult as string;
        };

        it("every Lambda ENI request is allowed on this stack's resources, and only there", async () => {
            const withVpc = ["dev", "prod", "pr-42"].filter((stack) => d(stack).env.network.vpc);
            assert.ok(withVpc.includes("prod"), "prod runs in a VPC");
            for (const stack of withVpc) {
                const x = d(stack);
                const region = x.env.region;
                const subnets = ofType(x, TYPES.subnet).map((s) => s.state.arn as string);
                const sg = one(x, TYPES.securityGroup, (g) => g.inputs.name === `eventpipe-${stack}-functions`).state.arn as string;
                const eni = `arn:aws:ec2:${region}:${ACCOUNT_ID}:network-interface/eni-0123456789abcdef0`;
                for (const fn of ["stream-processor", "transformer", "auditor"]) {
                    const policy = one(x, TYPES.rolePolicy, (r) => r.inputs.name === `eventpipe-${stack}-${fn}-permissions`).inputs.policy;
                    for (const { action, on } of LAMBDA_ENI_REQUESTS) {
                        const resources = on === "*" ? ["*"] : on === "subnets" ? subnets : on === "security-group" ? [sg] : [eni];
                        for (const resource of resources) {
                            assert.equal(await simulate(policy, action, resource), "Allowed", `${fn}: ${action} on ${resource}`);
                        }
                        if (on === "eni" || on === "new-eni") {
                            const foreign = `arn:aws:ec2:${region}:210987654321:network-interface/eni-0123456789abcdef0`;
                            assert.equal(await simulate(policy, action, foreign, "210987654321"), "ImplicitlyDenied", `${fn}: ${action} on another account's ENI`);
                        }
                        if (on === "subnets") {
                            const other = `arn:aws:ec2:${region}:${ACCOUNT_ID}:subnet/subnet-of-another-vpc`;
                            assert.equal(await simulate(policy, action, other), "ImplicitlyDenied", `${fn}: ${action} in another subnet`);
                        }
                    }
                    // Exactly the managed policy's EC2 actions, and "*" only where EC2 authorises nothing else.
                    const ec2 = statements(policy).filter((s) => [s.Action].flat().some((a: string) => a.startsWith("ec2:")));
                    assert.deepEqual(
                        [...new Set(ec2.flatMap((s) => [s.Action].flat()))].sort(),
                        [...new Set(LAMBDA_ENI_REQUESTS.map((r) => r.action))].sort(),
                    );
                    for (const s of ec2) {
                        const wildcard = [s.Resource].flat().includes("*");
                        for (const a of [s.Action].flat() as string[]) {
                            assert.equal(wildcard, await isWildcardOnlyAction("ec2", a.slice(4)), `${a} on ${JSON.stringify(s.Resource)}`);
                        }
                    }
                }
            }
        });

        it("RESOURCE_WILDCARD_ACTIONS holds only actions that the Service Authorization Reference authorises on \"*\" alone", async () => {
            for (const a of RESOURCE_WILDCARD_ACTIONS) {
                const [service, action] = a.split(":") as [string, string];
                assert.ok(await isWildcardOnlyAction(service, action), a);
            }
        });
    });

    it("a one-minute auditor period is `rate(1 minute)`, and its alarms then look at one minute", async () => {
        const base = loadEnvironment("dev");
        const env = { ...base, auditor: { ...base.auditor, period_minutes: 1 } };
        const x = await deploy("dev", async () => (await createPipeline({ env, artifacts: artifacts(), gitSha: GIT_SHA })) as unknown as Record<string, unknown>);
        assert.equal(one(x, TYPES.eventRule).inputs.scheduleExpression, "rate(1 minute)");
        assert.equal(fnNamed(x, "eventpipe-dev-auditor").environment.variables.AUDIT_PERIOD_MINUTES, "1");
        for (const name of ["eventpipe-dev-auditor-stuck-objects", "eventpipe-dev-auditor-errors"]) {
            assert.equal(one(x, TYPES.alarm, byName(name)).inputs.period, 60, name);
        }
        assert.equal(scheduleExpression(60), "rate(60 minutes)");
        for (const bad of [0, 1.5, -5]) {
            assert.throws(() => scheduleExpression(bad), /whole number of minutes/, String(bad));
        }
    });

    it("the flavours differ where the files do", () => {
        assert.equal(ofType(d("prod"), TYPES.bucket).length, 4); // raw, processed, access logs, trail
        assert.equal(ofType(d("dev"), TYPES.bucket).length, 4); // dev runs prod's switches first
        assert.equal(ofType(d("pr-42"), TYPES.bucket).length, 2);
        assert.equal(ofType(d("dev"), TYPES.vpc).length, 1);
        assert.equal(ofType(d("pr-42"), TYPES.vpc).length, 0);
        assert.notEqual(one(d("dev"), TYPES.vpc).inputs.cidrBlock, one(d("prod"), TYPES.vpc).inputs.cidrBlock, "dev and prod may share an account");
        assert.equal(one(d("prod"), TYPES.stream).inputs.shardCount, 4);
        assert.equal(one(d("dev"), TYPES.stream).inputs.shardCount, 2);
        assert.equal(one(d("pr-42"), TYPES.stream).inputs.streamModeDetails.streamMode, "ON_DEMAND");
        assert.equal(fnNamed(d("prod"), "eventpipe-prod-transformer").reservedConcurrentExecutions, 50);
        assert.equal(fnNamed(d("pr-42"), "eventpipe-pr-42-transformer").reservedConcurrentExecutions, 2);
        assert.equal(one(d("prod"), TYPES.bucket, (b) => b.inputs.bucket.includes("-raw-")).inputs.forceDestroy, false);
        assert.equal(one(d("pr-42"), TYPES.bucket, (b) => b.inputs.bucket.includes("-raw-")).inputs.forceDestroy, true);
    });
});
