// The authorisation model and the offline gate: the committed renderings the local emulator
// enforces are what the program generates now; every request the pipeline makes is allowed by
// every environment's policies and every grant is used; a missing statement is named by the
// request it denies.

import { strict as assert } from "node:assert";

import { gateFor } from "../authz/cli";
import { gate, HEAD_ONLY_OBJECT_READS, implied, passes, report, withoutStatement, type Request } from "../authz/gate";
import { localTarget, renderModel, writeLocalModels } from "../authz/render";
import { compareRecord, loadRequests, type RecordedRequest } from "../authz/requests";

const describeRequest = (d: { request: { principal: string; action: string; resource: string } }) =>
    `${d.request.principal} ${d.request.action} ${d.request.resource}`;

describe("authorisation model", function () {
    this.timeout(300_000);

    it("the committed renderings for the local emulator are the program's (`cargo xtask authz --render`)", async () => {
        const stale = await writeLocalModels(true);
        assert.deepEqual(stale, [], "the program's policies changed: run `npm run authz:render` in pulumi/ and commit authz/local/");
    });

    it("names every identity statement, so that the gate can say which one allows a request", async () => {
        const model = await renderModel("prod", localTarget());
        const unnamed = model.principals.flatMap((p) =>
            p.policies.flatMap((policy) => policy.document.Statement.filter((s) => !s.Sid).map(() => `${p.id}/${policy.name}`)),
        );
        assert.deepEqual(unnamed, []);
    });

    it("renders the roles of the three functions and both tools, with the platform's requests", async () => {
        const model = await renderModel("dev", localTarget());
        assert.deepEqual(model.principals.map((p) => `${p.id}:${p.kind}`).sort(), [
            "auditor:function",
            "operator:tool",
            "producer:tool",
            "stream-processor:function",
            "transformer:function",
        ]);
        const esm = model.platform.filter((r) => r.principal === "stream-processor" && r.action === "sqs:SendMessage");
        assert.deepEqual(esm.map((r) => r.resource), ["arn:aws:sqs:us-east-1:000000000000:eventpipe-local-stream-dlq"]);
    });
});

describe("the auditor's authorisation", function () {
    this.timeout(300_000);

    it("renders its role with its inline policy and boundary, and a function policy that lets only its schedule invoke it", async () => {
        for (const environment of ["dev", "prod", "preview"] as const) {
            const model = await renderModel(environment, localTarget());
            const auditor = model.principals.find((p) => p.id === "auditor");
            assert.ok(auditor, environment);
            assert.equal(auditor.roleName, "eventpipe-local-auditor-role");
            assert.deepEqual(auditor.policies.map((p) => p.name), ["eventpipe-local-auditor-permissions"]);
            assert.equal(auditor.permissionsBoundary?.arn, "arn:aws:iam::000000000000:policy/eventpipe-local-boundary");
            const sids = auditor.policies[0]?.document.Statement.map((s) => s.Sid) ?? [];
            for (const sid of ["QueryPendingIndex", "ReadMetadataItems", "ListRawPrefix", "HeadRawObjects", "RedriveToTransformer", "WriteOwnLogs"]) {
                assert.ok(sids.includes(sid), `${environment}: ${sid}`);
            }
            assert.ok(!sids.includes("UsePipelineKey"), environment);
            const fn = model.resources.find((r) => r.kind === "lambda-function" && r.name === "eventpipe-local-auditor");
            assert.deepEqual(fn?.policy?.Statement, [
                {
                    Sid: "auditor-schedule-invoke",
                    Effect: "Allow",
                    Principal: { Service: "events.amazonaws.com" },
                    Action: "lambda:InvokeFunction",
                    Resource: "arn:aws:lambda:us-east-1:000000000000:function:eventpipe-local-auditor",
                    Condition: { ArnLike: { "AWS:SourceArn": "arn:aws:events:us-east-1:000000000000:rule/eventpipe-local-auditor-schedule" } },
                },
            ]);
            // EventBridge's invocation is the service's own: the role makes no request for it.
            const platform = [...new Set(model.platform.filter((r) => r.principal === "auditor").map((r) => r.action))];
            assert.ok(platform.includes("logs:PutLogEvents") && !platform.some((a) => a.startsWith("lambda:")), platform.join(", "));
        }
    });

    it("its HEAD of a raw object implies a listing and no KMS call, where the transformer's GET implies kms:Decrypt", async () => {
        const { model } = await gateFor("prod");
        const raw = model.resources.find((r) => r.kind === "s3-bucket" && r.name.includes("-raw-"));
        assert.ok(raw?.kmsKeyArn, "the raw bucket is SSE-KMS");
        const read = (principal: string): Request => ({ principal, action: "s3:GetObject", resource: `${raw.arn}/raw/k`, context: {}, origin: "recorded" });
        assert.deepEqual(
            implied(model, read("auditor")).map((r) => `${r.action} ${JSON.stringify(r.context)}`),
            [`s3:ListBucket ${JSON.stringify({ "s3:prefix": "raw/k" })}`],
        );
        assert.deepEqual(implied(model, read("transformer")).map((r) => r.action), ["kms:Decrypt", "s3:ListBucket"]);
        // The exception is the auditor's raw/ reads only.
        assert.deepEqual(implied(model, { ...read("auditor"), resource: `${raw.arn}/quarantine/k` }).map((r) => r.action), ["kms:Decrypt", "s3:ListBucket"]);
        assert.deepEqual(HEAD_ONLY_OBJECT_READS.map((h) => `${h.principal} ${h.prefix}`), ["auditor raw/"]);
    });
});

describe("the record of requests", () => {
    const request = (action: string, emulator = "Allow"): RecordedRequest => ({
        principal: "transformer",
        action,
        resource: "arn:{partition}:s3:::{raw_bucket}/raw/{object}",
        context: {},
        emulator,
    });

    it("is stale when a run makes a request it lacks, and names that request", () => {
        const { missing, unseen } = compareRecord([request("s3:GetObject"), request("s3:PutObject")], [request("s3:GetObject")]);
        assert.deepEqual(missing.map((r) => r.action), ["s3:PutObject"]);
        assert.deepEqual(unseen, []);
    });

    it("is not stale when a run skips a recorded path, such as a retry that timing did not call for", () => {
        const { missing, unseen } = compareRecord([request("s3:GetObject"), request("s3:GetObject")], [request("s3:GetObject"), request("s3:DeleteObject")]);
        assert.deepEqual(missing, []);
        assert.deepEqual(unseen.map((r) => r.action), ["s3:DeleteObject"]);
    });

    it("tells a request the emulator denied from the same request allowed", () => {
        const { missing } = compareRecord([request("s3:GetObject", "Deny")], [request("s3:GetObject")]);
        assert.deepEqual(missing.map((r) => `${r.action} ${r.emulator}`), ["s3:GetObject Deny"]);
    });
});

describe("authorisation gate", function () {
    this.timeout(300_000);

    for (const env of ["dev", "prod", "preview"] as const) {
        it(`${env}: every recorded, platform and implied request is allowed, and every grant is used`, async () => {
            const { model, result } = await gateFor(env);
            assert.ok(passes(result), report(model, result));
            assert.ok(result.decisions.some((d) => d.request.origin === "implied" && d.request.action === "kms:GenerateDataKey"), "implied KMS calls are evaluated");
            assert.deepEqual(result.differences, [], "the emulator and the simulator agree on every recorded request");
        });
    }

    it("a removed statement is named by exactly the request it denies (the review's quarantine delete)", async () => {
        const { model } = await gateFor("dev");
        const broken = withoutStatement(model, "stream-processor", "ClearStaleQuarantineObjects");
        const result = await gate(broken, loadRequests());
        assert.equal(passes(result), false);
        assert.deepEqual(result.denied.map(describeRequest), ["stream-processor s3:DeleteObject arn:aws:s3:::eventpipe-dev-raw-123456789012/quarantine/k"]);
        assert.match(report(broken, result), /DENIED \(1\):\n {2}stream-processor s3:DeleteObject arn:aws:s3:::eventpipe-dev-raw-123456789012\/quarantine\/k/);
    });

    it("the KMS calls that SSE-KMS implies are denied without the key statement, though no recorded request names KMS", async () => {
        const { model } = await gateFor("prod");
        assert.ok(!loadRequests().some((r) => r.action.startsWith("kms:")));
        const result = await gate(withoutStatement(model, "transformer", "UsePipelineKey"), loadRequests());
        assert.deepEqual(
            [...new Set(result.denied.map((d) => `${d.request.action} ${String(d.request.context["kms:ViaService"])}`))].sort(),
            [
                "kms:Decrypt s3.eu-west-1.amazonaws.com",
                "kms:Decrypt secretsmanager.eu-west-1.amazonaws.com",
                "kms:Decrypt sqs.eu-west-1.amazonaws.com",
                "kms:GenerateDataKey s3.eu-west-1.amazonaws.com",
                "kms:GenerateDataKey sqs.eu-west-1.amazonaws.com",
            ],
        );
    });

    it("a grant no request uses fails the gate too (least privilege both ways)", async () => {
        const { model } = await gateFor("dev");
        const widened = JSON.parse(JSON.stringify(model));
        const policy = widened.principals.find((p: any) => p.id === "producer").policies[0].document;
        policy.Statement.push({ Sid: "Unused", Effect: "Allow", Action: "kinesis:DescribeStreamSummary", Resource: "arn:aws:kinesis:eu-west-1:123456789012:stream/eventpipe-dev-events" });
        const result = await gate(widened, loadRequests());
        assert.deepEqual(result.denied, []);
        assert.deepEqual(
            result.unused.map((u) => `${u.principal} ${u.statement} ${u.action}`),
            ["producer eventpipe-dev-producer-permissions#Unused kinesis:DescribeStreamSummary"],
        );
    });
});
