// The offline authorisation gate: every request the pipeline makes, evaluated with a maintained
// IAM policy simulator (@cloud-copilot/iam-simulate) against the documents the Pulumi program
// generates for one environment, least privilege both ways:
//
// - every request must be allowed: the ones the end-to-end run recorded (recorded-requests.json), the ones
//   AWS makes with a role on its behalf (the model's `platform`), and the KMS and S3 calls those
//   imply (`implied` below), which the local emulator does not derive;
// - every (action, resource) an identity policy grants must be used by one of them.
//
// It is a second evaluator beside the emulator's own: where the two disagree on a recorded request,
// the case must be one of KNOWN_DIFFERENCES, each decided by AWS's documentation.

import { runSimulation } from "@cloud-copilot/iam-simulate";

import type { Model, PolicyDocument, Principal, Resource, Statement } from "./model";
import { instantiate, type RecordedRequest, type StackNames } from "./requests";

export type Origin = "recorded" | "platform" | "implied";

export interface Request {
    principal: string;
    action: string;
    resource: string;
    context: Record<string, string | string[]>;
    origin: Origin;
    /** Why it is made, for platform and implied requests. */
    because?: string;
    /** The local emulator's decision, for recorded requests. */
    emulator?: string;
}

export interface Decision {
    request: Request;
    allowed: boolean;
    /** `policy#Sid` of the identity statements that allow it. */
    identity: string[];
    /** `Sid` of the resource-policy statements that allow it, `-` when none applies. */
    resourcePolicy: string[];
    /** What the simulator could not evaluate. */
    error?: string;
}

export interface UnusedGrant {
    principal: string;
    statement: string;
    action: string;
    resource: string;
}

export interface GateResult {
    decisions: Decision[];
    denied: Decision[];
    unused: UnusedGrant[];
    /** Recorded requests where the emulator and the simulator disagree, with the known reason. */
    differences: { decision: Decision; known?: string }[];
}

/**
 * Where the local emulator (ministack 1.5.33) and AWS differ; AWS's documentation decides. Matched
 * on the action; `emulator` is what the emulator decided.
 */
export const KNOWN_DIFFERENCES: { action: string; emulator: string; why: string }[] = [];

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** `arn:aws:iam::A:role/R` → `arn:aws:sts::A:assumed-role/R/gate`: the session a role's credentials make. */
function sessionArn(p: Principal): string {
    return p.roleArn.replace(/:iam::(\d+):role\/(.+)$/, ":sts::$1:assumed-role/$2/authz-gate");
}

function resourceOf(model: Model, arn: string): Resource | undefined {
    return model.resources.find((r) => {
        if (r.kind === "s3-bucket") {
            return arn === r.arn || arn.startsWith(`${r.arn}/`);
        }
        return arn === r.arn || arn.startsWith(`${r.arn}/`);
    });
}

const KMS_VIA: Record<string, string> = { s3: "s3", sqs: "sqs", secretsmanager: "secretsmanager", kinesis: "kinesis" };

/**
 * Principals whose `s3:GetObject` requests under a key prefix are all HeadObject. S3 authorises
 * HEAD as s3:GetObject, so the record shows the two alike; but a HEAD returns no body, so S3
 * decrypts nothing and makes no KMS call with the caller's permissions, as a GET of the same
 * SSE-KMS object does. A missing key still answers 404 only to a caller who may list the bucket.
 * Each entry names the code that makes every such request, which must make no GET there.
 */
export const HEAD_ONLY_OBJECT_READS: readonly { principal: string; prefix: string; because: string }[] = [
    {
        principal: "auditor",
        prefix: "raw/",
        because: "the auditor reads raw objects only through ObjectCatalog::head (HeadObject, pipeline-aws s3.rs), for their user metadata",
    },
];

/** Whether `r` is one of the HEAD requests of HEAD_ONLY_OBJECT_READS, on the bucket `bucketArn`. */
function isHeadOnly(r: Request, bucketArn: string): boolean {
    const key = r.resource.slice(bucketArn.length + 1);
    return r.action === "s3:GetObject" && HEAD_ONLY_OBJECT_READS.some((h) => h.principal === r.principal && key.startsWith(h.prefix));
}

/**
 * The calls AWS makes on a request's behalf with the caller's own permissions, which an emulator
 * that does not encrypt does not see:
 * - SSE-KMS: S3 PutObject needs kms:GenerateDataKey, GetObject kms:Decrypt (with an S3 Bucket Key
 *   the encryption context is the bucket)
 *   https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html;
 * - SQS with a customer managed key: SendMessage needs kms:GenerateDataKey and kms:Decrypt,
 *   ReceiveMessage kms:Decrypt https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html;
 * - Secrets Manager: GetSecretValue needs kms:Decrypt on the secret's key
 *   https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html;
 * - Kinesis server-side encryption: PutRecord(s) need kms:GenerateDataKey, GetRecords kms:Decrypt
 *   https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html;
 * - S3 GetObject of a key that is gone answers NoSuchKey only to a caller who may s3:ListBucket
 *   the bucket (AccessDenied otherwise), and the functions and tools treat a missing object as
 *   gone https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html; the same holds for
 *   HeadObject https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html, which implies
 *   no KMS call (HEAD_ONLY_OBJECT_READS).
 * DynamoDB encryption with a customer managed key needs no permission of the caller at request
 * time (DynamoDB uses its own grant on the key), so it implies nothing here.
 */
export function implied(model: Model, r: Request): Request[] {
    const out: Request[] = [];
    const service = r.action.split(":")[0] as string;
    const target = resourceOf(model, r.resource);
    const key = target?.kmsKeyArn;
    const via = (s: string) => ({ "kms:ViaService": `${s}.${model.region}.amazonaws.com` });
    const add = (action: string, resource: string, context: Record<string, string | string[]>, because: string) =>
        out.push({ principal: r.principal, action, resource, context, origin: "implied", because: `${because} (implied by ${r.action})` });
    if (key && KMS_VIA[service]) {
        const kms = (action: string, context: Record<string, string> = {}) =>
            add(action, key, { ...via(KMS_VIA[service] as string), ...context }, `${service} encrypts with the pipeline key`);
        const s3Context = target?.bucketKey ? { "kms:EncryptionContext:aws:s3:arn": target.arn } : { "kms:EncryptionContext:aws:s3:arn": r.resource };
        switch (r.action) {
            case "s3:PutObject":
                kms("kms:GenerateDataKey", s3Context);
                break;
            case "s3:GetObject":
                if (!isHeadOnly(r, target?.arn ?? "")) {
                    kms("kms:Decrypt", s3Context);
                }
                break;
            case "sqs:SendMessage":
                kms("kms:GenerateDataKey");
                kms("kms:Decrypt");
                break;
            case "sqs:ReceiveMessage":
                kms("kms:Decrypt");
                break;
            case "secretsmanager:GetSecretValue":
                kms("kms:Decrypt", { "kms:EncryptionContext:SecretARN": r.resource });
                break;
            case "kinesis:PutRecord":
            case "kinesis:PutRecords":
                kms("kms:GenerateDataKey");
                break;
            case "kinesis:GetRecords":
                kms("kms:Decrypt");
                break;
            default:
                break;
        }
    }
    if (r.action === "s3:GetObject" && target?.kind === "s3-bucket") {
        const objectKey = r.resource.slice(target.arn.length + 1);
        add("s3:ListBucket", target.arn, { "s3:prefix": objectKey }, "S3 answers NoSuchKey for a missing key");
    }
    return out;
}

/** The Sid of a statement as the simulator returns it (a parsed statement, or plain JSON). */
function sidOf(statement: any): string {
    const sid = typeof statement?.sid === "function" ? statement.sid() : statement?.Sid;
    return sid ?? "?";
}

async function decide(model: Model, request: Request): Promise<Decision> {
    const principal = model.principals.find((p) => p.id === request.principal);
    if (!principal) {
        return { request, allowed: false, identity: [], resourcePolicy: [], error: `no principal ${request.principal} in the model` };
    }
    const target = resourceOf(model, request.resource);
    const simulation = {
        request: {
            principal: sessionArn(principal),
            action: request.action,
            resource: { resource: request.resource, accountId: model.accountId },
            contextVariables: {
                "aws:SecureTransport": "true",
                "aws:PrincipalArn": principal.roleArn,
                "aws:PrincipalAccount": model.accountId,
                // S3 sets the account that owns the bucket on every request.
                ...(request.action.startsWith("s3:") ? { "s3:ResourceAccount": model.accountId } : {}),
                // What `aws:ResourceTag/*` conditions read (S3 objects carry object tags, not these).
                ...(target?.tags && target.kind !== "s3-bucket"
                    ? Object.fromEntries(Object.entries(target.tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]))
                    : {}),
                ...request.context,
            },
        },
        identityPolicies: principal.policies.map((p) => ({ name: p.name, policy: p.document })),
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(target?.policy ? { resourcePolicy: target.policy } : {}),
        ...(principal.permissionsBoundary
            ? { permissionBoundaryPolicies: [{ name: principal.permissionsBoundary.arn, policy: principal.permissionsBoundary.document }] }
            : {}),
    };
    const result: any = await runSimulation(simulation, {});
    if (result.resultType === "error") {
        return { request, allowed: false, identity: [], resourcePolicy: [], error: JSON.stringify(result.errors) };
    }
    const analyses: any[] = result.resultType === "single" ? [result.result.analysis] : result.results.map((x: any) => x.analysis);
    const identity = new Set<string>();
    const resource = new Set<string>();
    for (const a of analyses) {
        for (const s of a.identityAnalysis?.allowStatements ?? []) {
            identity.add(`${s.policyId}#${sidOf(s.statement)}`);
        }
        for (const s of a.resourceAnalysis?.allowStatements ?? []) {
            resource.add(sidOf(s.statement));
        }
    }
    return {
        request,
        allowed: result.overallResult === "Allowed",
        identity: [...identity].sort(),
        resourcePolicy: resource.size > 0 ? [...resource].sort() : ["-"],
    };
}

/** Whether an IAM pattern (`*`, `?`) matches a value. */
function matches(pattern: string, value: string, caseInsensitive = false): boolean {
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, caseInsensitive ? "i" : "");
    return re.test(value);
}

/** Every (statement, action, resource pattern) an identity policy grants that no allowed request uses. */
function unusedGrants(model: Model, decisions: Decision[]): UnusedGrant[] {
    const out: UnusedGrant[] = [];
    for (const p of model.principals) {
        for (const policy of p.policies) {
            for (const s of policy.document.Statement as Statement[]) {
                if (s.Effect !== "Allow") {
                    continue;
                }
                const id = `${policy.name}#${s.Sid ?? "?"}`;
                const users = decisions.filter((d) => d.allowed && d.request.principal === p.id && d.identity.includes(id));
                for (const action of asList(s.Action)) {
                    for (const resource of asList(s.Resource)) {
                        const used = users.some((d) => matches(action, d.request.action, true) && matches(resource, d.request.resource));
                        if (!used) {
                            out.push({ principal: p.id, statement: id, action, resource });
                        }
                    }
                }
            }
        }
    }
    return out;
}

/** The stack names of a model, for instantiating the recorded requests. */
export function stackNames(model: Model): StackNames {
    const key = model.resources.find((r) => r.kind === "kms-key");
    const secret = model.resources.find((r) => r.kind === "secret");
    return {
        project: "eventpipe",
        stack: model.stack,
        accountId: model.accountId,
        region: model.region,
        partition: model.partition,
        kmsKeyId: key?.name ?? "",
        secretSuffix: secret ? (secret.arn.slice(secret.arn.lastIndexOf("-") + 1) as string) : "",
    };
}

/** Evaluates every request against `model`. */
export async function gate(model: Model, recorded: RecordedRequest[]): Promise<GateResult> {
    const names = stackNames(model);
    const base: Request[] = [
        ...recorded.map((r) => ({ ...instantiate(r, names), origin: "recorded" as const })),
        ...model.platform.map((p) => ({ principal: p.principal, action: p.action, resource: p.resource, context: p.context ?? {}, origin: "platform" as const, because: p.because })),
    ];
    const all = [...base, ...base.flatMap((r) => implied(model, r))];
    const unique = new Map<string, Request>();
    for (const r of all) {
        const k = JSON.stringify([r.principal, r.action, r.resource, r.context, r.origin]);
        if (!unique.has(k)) {
            unique.set(k, r);
        }
    }
    const decisions: Decision[] = [];
    for (const r of unique.values()) {
        decisions.push(await decide(model, r));
    }
    decisions.sort((a, b) =>
        [a.request.principal, a.request.action, a.request.resource].join(" ").localeCompare([b.request.principal, b.request.action, b.request.resource].join(" ")),
    );
    const differences = decisions
        .filter((d) => d.request.origin === "recorded" && (d.request.emulator === "Allow") !== d.allowed)
        .map((decision) => ({
            decision,
            known: KNOWN_DIFFERENCES.find((k) => k.action === decision.request.action && k.emulator === decision.request.emulator)?.why,
        }));
    return { decisions, denied: decisions.filter((d) => !d.allowed), unused: unusedGrants(model, decisions), differences };
}

/** Whether the gate passes: nothing denied, nothing granted unused, no unexplained difference. */
export function passes(r: GateResult): boolean {
    return r.denied.length === 0 && r.unused.length === 0 && r.differences.every((d) => d.known !== undefined);
}

/** The table a person reads: per principal, every request and what allows it. */
export function report(model: Model, r: GateResult): string {
    const lines: string[] = [];
    lines.push(`authorisation of ${model.policiesOf}'s policies (stack ${model.stack}, account ${model.accountId}, ${model.region})`);
    for (const p of model.principals) {
        const mine = r.decisions.filter((d) => d.request.principal === p.id);
        lines.push("", `${p.id} (${p.roleName}): ${mine.length} requests`);
        const width = Math.max(...mine.map((d) => d.request.action.length), 10);
        for (const d of mine) {
            const verdict = d.allowed ? "allow" : "DENY ";
            const by = d.allowed ? `${d.identity.map((i) => i.split("#")[1]).join(",")} | resource policy ${d.resourcePolicy.join(",")}` : (d.error ?? "no statement allows it");
            const context = Object.entries(d.request.context)
                .filter(([k]) => k === "kms:ViaService" || k === "s3:prefix")
                .map(([k, v]) => `${k}=${String(v)}`)
                .join(" ");
            lines.push(`  ${verdict} ${d.request.action.padEnd(width)} ${d.request.resource}${context ? ` (${context})` : ""}  [${d.request.origin}] ${by}`);
        }
    }
    if (r.denied.length > 0) {
        lines.push("", `DENIED (${r.denied.length}):`);
        for (const d of r.denied) {
            lines.push(`  ${d.request.principal} ${d.request.action} ${d.request.resource} ${JSON.stringify(d.request.context)} [${d.request.origin}${d.request.because ? `: ${d.request.because}` : ""}]`);
        }
    }
    if (r.unused.length > 0) {
        lines.push("", `GRANTED BUT UNUSED (${r.unused.length}):`);
        for (const u of r.unused) {
            lines.push(`  ${u.principal} ${u.statement} ${u.action} on ${u.resource}`);
        }
    }
    for (const d of r.differences) {
        lines.push(
            "",
            `${d.known ? "known difference" : "UNEXPLAINED DIFFERENCE"}: ${d.decision.request.principal} ${d.decision.request.action} ${d.decision.request.resource}: emulator ${d.decision.request.emulator}, simulator ${d.decision.allowed ? "Allow" : "Deny"}${d.known ? ` (${d.known})` : ""}`,
        );
    }
    const counts = model.principals.map((p) => `${p.id} ${new Set(r.decisions.filter((d) => d.request.principal === p.id).map((d) => d.request.action)).size}`);
    lines.push("", `principals × actions: ${counts.join(", ")}; ${r.decisions.length} requests, ${r.denied.length} denied, ${r.unused.length} unused grants`);
    return lines.join("\n");
}

/** A copy of `model` without the identity statement `sid` of principal `id` (for tests). */
export function withoutStatement(model: Model, id: string, sid: string): Model {
    const copy: Model = JSON.parse(JSON.stringify(model));
    const p = copy.principals.find((x) => x.id === id);
    if (!p) {
        throw new Error(`no principal ${id}`);
    }
    let removed = 0;
    for (const policy of p.policies) {
        const doc = policy.document as PolicyDocument;
        const before = doc.Statement.length;
        doc.Statement = doc.Statement.filter((s) => s.Sid !== sid);
        removed += before - doc.Statement.length;
    }
    if (removed !== 1) {
        throw new Error(`${id} has ${removed} statements ${sid}`);
    }
    return copy;
}
