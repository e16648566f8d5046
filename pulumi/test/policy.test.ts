import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as path from "node:path";

import {
    checkAll,
    dlqAlarm,
    encryptionAtRest,
    iamNoWildcards,
    lambdaFailureDestinations,
    lambdaLogGroupRetention,
    NO_BUCKET_KEY_BUCKET_ROLES,
    RESOURCE_POLICIES,
    s3BucketBaseline,
    s3PublicAccessBlock,
    s3TlsOnly,
    STACK_POLICIES,
    wildcardProblems,
    type ResourceLike,
} from "../policy/rules";
import { asPolicyResources, deploy, type Deployment } from "./harness";

const R = (type: string, props: Record<string, unknown>, name = "test"): ResourceLike => ({ type, name, props });
const doc = (...Statement: object[]) => JSON.stringify({ Version: "2012-10-17", Statement });
const BUCKET_ARN = "arn:aws:s3:::eventpipe-dev-raw-123456789012";
const tlsDeny = {
    Effect: "Deny",
    Principal: "*",
    Action: "s3:*",
    Resource: [BUCKET_ARN, `${BUCKET_ARN}/*`],
    Condition: { Bool: { "aws:SecureTransport": "false" } },
};

describe("policies", () => {
    describe("every stack flavour complies", () => {
        for (const stack of ["dev", "prod", "pr-42"]) {
            it(stack, async () => {
                const d: Deployment = await deploy(stack);
                const resources = asPolicyResources(d);
                assert.ok(resources.length > 40, "the program registered its resources");
                assert.deepEqual(checkAll(resources), []);
            });
        }
    });

    describe("iam-no-wildcards", () => {
        const rolePolicy = (...statements: object[]) => R("aws:iam/rolePolicy:RolePolicy", { policy: doc(...statements) });
        const ok = (...statements: object[]) => assert.deepEqual(iamNoWildcards.validate(rolePolicy(...statements)), []);
        const bad = (pattern: RegExp, ...statements: object[]) => {
            const problems = iamNoWildcards.validate(rolePolicy(...statements));
            assert.ok(problems.some((p) => pattern.test(p)), `${JSON.stringify(problems)} should match ${pattern}`);
        };

        it("accepts explicit actions on explicit ARNs and object prefixes", () => {
            ok(
                { Effect: "Allow", Action: ["s3:PutObject"], Resource: [`${BUCKET_ARN}/raw/*`, `${BUCKET_ARN}/quarantine/*`] },
                { Effect: "Allow", Action: "logs:PutLogEvents", Resource: "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f:log-stream:*" },
                { Effect: "Allow", Action: "ec2:DeleteNetworkInterface", Resource: "arn:aws:ec2:eu-west-1:123456789012:network-interface/*" },
                { Effect: "Allow", Action: ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], Resource: "*" },
                { Effect: "Deny", Principal: "*", Action: "s3:*", Resource: "*" },
            );
        });

        it("rejects wildcard actions", () => {
            bad(/action "\*"/, { Effect: "Allow", Action: "*", Resource: BUCKET_ARN });
            bad(/action "s3:\*"/, { Effect: "Allow", Action: "s3:*", Resource: BUCKET_ARN });
            bad(/action "s3:Get\*"/, { Effect: "Allow", Action: ["s3:Get*"], Resource: BUCKET_ARN });
            bad(/NotAction/, { Effect: "Allow", NotAction: "iam:*", Resource: BUCKET_ARN });
        });

        it("rejects wildcard resources outside the documented exceptions", () => {
            bad(/resource "\*" with s3:GetObject/, { Effect: "Allow", Action: "s3:GetObject", Resource: "*" });
            bad(/resource "\*" with dynamodb:GetItem/, { Effect: "Allow", Action: ["xray:PutTraceSegments", "dynamodb:GetItem"], Resource: "*" });
            bad(/wildcard other than a trailing/, { Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::*/raw/x" });
            bad(/wildcard other than a trailing/, { Effect: "Allow", Action: "kinesis:GetRecords", Resource: "arn:aws:kinesis:*:123456789012:stream/x" });
            bad(/wildcard other than a trailing/, { Effect: "Allow", Action: "dynamodb:GetItem", Resource: "arn:aws:dynamodb:eu-west-1:*:table/x" });
            bad(/wildcard other than a trailing/, { Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/raw*" });
            bad(/NotResource/, { Effect: "Allow", Action: "s3:GetObject", NotResource: BUCKET_ARN });
        });

        it("rejects public principals in resource policies", () => {
            const queuePolicy = R("aws:sqs/queuePolicy:QueuePolicy", {
                policy: doc({ Effect: "Allow", Principal: { AWS: "*" }, Action: "sqs:SendMessage", Resource: "arn:aws:sqs:eu-west-1:123456789012:q" }),
            });
            assert.match(iamNoWildcards.validate(queuePolicy).join(), /allows any principal/);
            const bucketPolicy = R("aws:s3/bucketPolicy:BucketPolicy", {
                policy: doc(tlsDeny, { Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `${BUCKET_ARN}/*` }),
            });
            assert.match(iamNoWildcards.validate(bucketPolicy).join(), /allows any principal/);
        });

        it("checks inline role policies and forbids managed policy attachments", () => {
            const role = R("aws:iam/role:Role", { inlinePolicies: [{ name: "x", policy: doc({ Effect: "Allow", Action: "s3:*", Resource: "*" }) }] });
            assert.ok(iamNoWildcards.validate(role).length >= 2);
            const attachment = R("aws:iam/rolePolicyAttachment:RolePolicyAttachment", { policyArn: "arn:aws:iam::aws:policy/AdministratorAccess" });
            assert.match(iamNoWildcards.validate(attachment).join(), /managed policy .* is not allowed/);
        });

        it("rejects what is not a policy document", () => {
            assert.deepEqual(wildcardProblems("not json"), ["the policy is not a JSON policy document"]);
        });
    });

    describe("encryption-at-rest", () => {
        const bad = (type: string, props: Record<string, unknown>) => assert.equal(encryptionAtRest.validate(R(type, props)).length > 0, true, type);
        const ok = (type: string, props: Record<string, unknown>) => assert.deepEqual(encryptionAtRest.validate(R(type, props)), [], type);
        const key = "arn:aws:kms:eu-west-1:123456789012:key/k";

        it("requires KMS on streams, tables, queues, topics, secrets and log groups", () => {
            ok("aws:kinesis/stream:Stream", { encryptionType: "KMS", kmsKeyId: key });
            bad("aws:kinesis/stream:Stream", { encryptionType: "NONE" });
            ok("aws:dynamodb/table:Table", { serverSideEncryption: { enabled: true, kmsKeyArn: key } });
            bad("aws:dynamodb/table:Table", { serverSideEncryption: { enabled: true } });
            bad("aws:dynamodb/table:Table", {});
            ok("aws:sqs/queue:Queue", { kmsMasterKeyId: key });
            bad("aws:sqs/queue:Queue", { sqsManagedSseEnabled: true });
            ok("aws:sns/topic:Topic", { kmsMasterKeyId: key });
            bad("aws:sns/topic:Topic", {});
            ok("aws:secretsmanager/secret:Secret", { kmsKeyId: key });
            bad("aws:secretsmanager/secret:Secret", {});
            ok("aws:cloudwatch/logGroup:LogGroup", { kmsKeyId: key, retentionInDays: 7 });
            bad("aws:cloudwatch/logGroup:LogGroup", { retentionInDays: 7 });
        });

        it("requires a customer key for S3 SSE-KMS (the bucket key depends on the bucket's role: s3-bucket-baseline)", () => {
            const sse = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration";
            ok(sse, { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: key }, bucketKeyEnabled: true }] });
            ok(sse, { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: key }, bucketKeyEnabled: false }] });
            ok(sse, { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }] });
            bad(sse, { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" }, bucketKeyEnabled: true }] });
            bad(sse, { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "unknown" } }] });
            bad(sse, { rules: [] });
        });

        it("ignores other resource types", () => {
            ok("aws:lambda/function:Function", {});
        });
    });

    describe("s3-public-access-block and s3-tls-only", () => {
        it("require all four public access flags", () => {
            const pab = (props: Record<string, unknown>) => s3PublicAccessBlock.validate(R("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", props));
            assert.deepEqual(pab({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }), []);
            assert.match(pab({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true }).join(), /restrictPublicBuckets/);
        });

        it("require a TLS deny on the bucket and its objects", () => {
            const policy = (...s: object[]) => s3TlsOnly.validate(R("aws:s3/bucketPolicy:BucketPolicy", { policy: doc(...s) }));
            assert.deepEqual(policy(tlsDeny), []);
            assert.equal(policy({ ...tlsDeny, Resource: `${BUCKET_ARN}/*` }).length, 1, "objects only");
            assert.equal(policy({ ...tlsDeny, Condition: { Bool: { "aws:SecureTransport": "true" } } }).length, 1);
            assert.equal(policy({ ...tlsDeny, Effect: "Allow" }).length, 1);
            assert.equal(policy({ ...tlsDeny, Action: "s3:GetObject" }).length, 1);
        });
    });

    describe("lambda-failure-destinations", () => {
        const esm = (props: Record<string, unknown>) =>
            lambdaFailureDestinations.validate(
                R("aws:lambda/eventSourceMapping:EventSourceMapping", {
                    eventSourceArn: "arn:aws:kinesis:eu-west-1:123456789012:stream/s",
                    destinationConfig: { onFailure: { destinationArn: "arn:aws:sqs:eu-west-1:123456789012:dlq" } },
                    maximumRetryAttempts: 5,
                    maximumRecordAgeInSeconds: 3600,
                    ...props,
                }),
            );
        const invoke = (props: Record<string, unknown>) =>
            lambdaFailureDestinations.validate(
                R("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", {
                    destinationConfig: { onFailure: { destination: "arn:aws:sqs:eu-west-1:123456789012:dlq" } },
                    maximumRetryAttempts: 2,
                    maximumEventAgeInSeconds: 3600,
                    ...props,
                }),
            );

        it("accepts finite retries with a destination", () => {
            assert.deepEqual(esm({}), []);
            assert.deepEqual(invoke({}), []);
        });

        it("rejects mappings without a destination or with infinite retries or age", () => {
            assert.match(esm({ destinationConfig: undefined }).join(), /no on-failure destination/);
            assert.match(esm({ maximumRetryAttempts: -1 }).join(), /maximumRetryAttempts must be set to 0-10000/);
            assert.match(esm({ maximumRetryAttempts: undefined }).join(), /maximumRetryAttempts/);
            assert.match(esm({ maximumRecordAgeInSeconds: -1 }).join(), /maximumRecordAgeInSeconds must be set/);
        });

        it("rejects invoke configs without a destination or with unbounded settings", () => {
            assert.match(invoke({ destinationConfig: {} }).join(), /no on-failure destination/);
            assert.match(invoke({ maximumRetryAttempts: undefined }).join(), /maximumRetryAttempts must be set to 0-2/);
            assert.match(invoke({ maximumEventAgeInSeconds: 30 }).join(), /maximumEventAgeInSeconds must be set to 60-21600/);
        });

        it("leaves SQS-sourced mappings to their queue's redrive policy", () => {
            assert.deepEqual(esm({ eventSourceArn: "arn:aws:sqs:eu-west-1:123456789012:q", destinationConfig: undefined }), []);
        });
    });

    describe("stack policies", () => {
        const bucket = (name: string, tags: Record<string, string> = {}) => R("aws:s3/bucket:Bucket", { bucket: name, tags }, name);
        const guards = (name: string, alg = "aws:kms", bucketKeyEnabled = true) => [
            R("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", {
                bucket: name,
                blockPublicAcls: true,
                blockPublicPolicy: true,
                ignorePublicAcls: true,
                restrictPublicBuckets: true,
            }),
            R("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", {
                bucket: name,
                rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: alg, kmsMasterKeyId: "k" }, bucketKeyEnabled }],
            }),
            R("aws:s3/bucketPolicy:BucketPolicy", {
                bucket: name,
                policy: doc({ ...tlsDeny, Resource: [`arn:aws:s3:::${name}`, `arn:aws:s3:::${name}/*`] }),
            }),
        ];

        it("s3-bucket-baseline: a complete bucket passes; each missing guard fails", () => {
            assert.deepEqual(s3BucketBaseline.validate([bucket("b"), ...guards("b")]), []);
            for (let i = 0; i < 3; i++) {
                const partial = guards("b").filter((_, j) => j !== i);
                const v = s3BucketBaseline.validate([bucket("b"), ...partial]);
                assert.equal(v.length, 1, `without guard ${i}`);
                assert.equal(v[0]?.resource?.name, "b");
            }
        });

        it("s3-bucket-baseline: SSE-S3 only on access-log buckets", () => {
            assert.match(
                s3BucketBaseline.validate([bucket("b"), ...guards("b", "AES256")]).map((v) => v.message).join(),
                /is not encrypted with SSE-KMS/,
            );
            assert.deepEqual(s3BucketBaseline.validate([bucket("logs", { "bucket-role": "access-logs" }), ...guards("logs", "AES256")]), []);
        });

        it("s3-bucket-baseline: an S3 Bucket Key with SSE-KMS, except on the CloudTrail (audit-logs) bucket", () => {
            const messages = (...r: ResourceLike[]) => s3BucketBaseline.validate(r).map((v) => v.message);
            assert.match(messages(bucket("raw", { "bucket-role": "raw" }), ...guards("raw", "aws:kms", false)).join(), /without an S3 Bucket Key/);
            assert.match(messages(bucket("b"), ...guards("b", "aws:kms", false)).join(), /without an S3 Bucket Key/);
            assert.deepEqual(messages(bucket("trail", { "bucket-role": "audit-logs" }), ...guards("trail", "aws:kms", false)), []);
            assert.deepEqual(NO_BUCKET_KEY_BUCKET_ROLES, ["audit-logs"]);
            // SSE-S3 has no bucket key to speak of.
            assert.deepEqual(messages(bucket("logs", { "bucket-role": "access-logs" }), ...guards("logs", "AES256", false)), []);
        });

        it("lambda-log-group-retention: a function needs a log group of the stack with retention", () => {
            const fn = R("aws:lambda/function:Function", { name: "f", loggingConfig: { logFormat: "JSON", logGroup: "/custom/f" } }, "f");
            assert.deepEqual(lambdaLogGroupRetention.validate([fn, R("aws:cloudwatch/logGroup:LogGroup", { name: "/custom/f", retentionInDays: 14 })]), []);
            assert.match(lambdaLogGroupRetention.validate([fn]).map((v) => v.message).join(), /not a log group of this stack/);
            assert.match(
                lambdaLogGroupRetention.validate([fn, R("aws:cloudwatch/logGroup:LogGroup", { name: "/custom/f" }, "lg")]).map((v) => v.message).join(),
                /has no retention period/,
            );
            const implicit = R("aws:lambda/function:Function", { name: "g" }, "g");
            assert.deepEqual(lambdaLogGroupRetention.validate([implicit, R("aws:cloudwatch/logGroup:LogGroup", { name: "/aws/lambda/g", retentionInDays: 1 })]), []);
        });

        it("dlq-alarm: every dead letter queue has a depth alarm with an action", () => {
            const dlq = R("aws:sqs/queue:Queue", { name: "x-stream-dlq", arn: "arn:aws:sqs:eu-west-1:1:x-stream-dlq" }, "dlq");
            const alarm = (props: Record<string, unknown>) =>
                R("aws:cloudwatch/metricAlarm:MetricAlarm", {
                    namespace: "AWS/SQS",
                    metricName: "ApproximateNumberOfMessagesVisible",
                    dimensions: { QueueName: "x-stream-dlq" },
                    alarmActions: ["arn:aws:sns:eu-west-1:1:t"],
                    ...props,
                });
            assert.deepEqual(dlqAlarm.validate([dlq, alarm({})]), []);
            assert.equal(dlqAlarm.validate([dlq]).length, 1);
            assert.equal(dlqAlarm.validate([dlq, alarm({ alarmActions: [] })]).length, 1);
            assert.equal(dlqAlarm.validate([dlq, alarm({ dimensions: { QueueName: "other" } })]).length, 1);
            // A queue named otherwise is a DLQ when a mapping sends failures to it.
            const target = R("aws:sqs/queue:Queue", { name: "failures", arn: "arn:aws:sqs:eu-west-1:1:failures" }, "failures");
            const mapping = R("aws:lambda/eventSourceMapping:EventSourceMapping", { destinationConfig: { onFailure: { destinationArn: "arn:aws:sqs:eu-west-1:1:failures" } } });
            assert.equal(dlqAlarm.validate([target, mapping]).length, 1);
            assert.deepEqual(dlqAlarm.validate([R("aws:sqs/queue:Queue", { name: "work" })]), []);
        });
    });

    it("every policy has a unique name and a description", () => {
        const names = [...RESOURCE_POLICIES, ...STACK_POLICIES].map((p) => p.name);
        assert.equal(new Set(names).size, names.length);
        for (const p of [...RESOURCE_POLICIES, ...STACK_POLICIES]) {
            assert.match(p.name, /^[a-z0-9-]+$/);
            assert.ok(p.description.length > 20);
        }
    });

    it("the CrossGuard pack accepts every policy and starts serving", async () => {
        // The CLI starts the pack and reads the port it prints; a bad policy definition throws first.
        const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join("policy", "index.ts")], {
            cwd: path.resolve(__dirname, ".."),
            stdio: ["ignore", "pipe", "pipe"],
        });
        try {
            const port = await new Promise<string>((resolve, reject) => {
                let out = "";
                let err = "";
                const timer = setTimeout(() => reject(new Error(`no port within 60 s; stderr: ${err}`)), 60_000);
                child.stdout.on("data", (d: Buffer) => {
                    out += d.toString();
                    const m = /^(\d+)\s*$/m.exec(out);
                    if (m) {
                        clearTimeout(timer);
                        resolve(m[1] as string);
                    }
                });
                child.stderr.on("data", (d: Buffer) => (err += d.toString()));
                child.on("exit", (code) => {
                    clearTimeout(timer);
                    reject(new Error(`the pack exited with ${code}: ${err}`));
                });
            });
            assert.ok(Number(port) > 0);
        } finally {
            child.kill();
        }
    });

    it("checkAll attributes violations to policies and resources", () => {
        const v = checkAll([R("aws:sqs/queue:Queue", { name: "q-dlq" }, "q")]);
        assert.deepEqual(v.map((x) => [x.policy, x.resource]).sort(), [
            ["dlq-alarm", "q"],
            ["encryption-at-rest", "q"],
        ]);
    });
});
