// The requests the pipeline makes, as the end-to-end run recorded them (`recorded-requests.json`), in a
// form that names no stack: `{raw_bucket}` for the raw bucket's name, `{account}` for the account,
// `{object}` for an object key below its first prefix, and so on. `normalise` turns what the local
// emulator recorded into that form; `instantiate` turns it into one environment's ARNs.

import * as fs from "node:fs";
import * as path from "node:path";

import { extraNames, names } from "../src/names";

/** One request: who asked what, on which resource, with which condition keys. */
export interface RecordedRequest {
    /** The principal's id in the model (`stream-processor`, `transformer`, `auditor`, `producer`, `operator`). */
    principal: string;
    action: string;
    resource: string;
    context: Record<string, string | string[]>;
    /** What the local emulator decided. */
    emulator: string;
}

/** The committed record of the end-to-end run. */
export const REQUESTS_PATH = path.resolve(__dirname, "recorded-requests.json");

export interface StackNames {
    project: string;
    stack: string;
    accountId: string;
    region: string;
    partition: string;
    /** The id of the pipeline's KMS key and the suffix of its secret's ARN. */
    kmsKeyId: string;
    secretSuffix: string;
}

/** Every name of a stack, by token (`raw_bucket`, `producerRole`, ...), longest value first. */
function tokens(s: StackNames): [string, string][] {
    const env = { project: s.project, name: s.stack };
    const all: Record<string, string> = { ...names(env, s.accountId), ...extraNames(env, s.accountId) };
    return Object.entries(all).sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]));
}

const OBJECT = "{object}";

/** `arn:aws:s3:::{bucket}/raw/2026/...` → `arn:aws:s3:::{bucket}/raw/{object}`; the same for prefixes. */
function generaliseKey(key: string): string {
    const slash = key.indexOf("/");
    return slash < 0 ? OBJECT : `${key.slice(0, slash + 1)}${OBJECT}`;
}

export function normalise(
    raw: { principal: string; action: string; resource: string; context?: Record<string, unknown>; decision: string },
    local: StackNames,
    principalOfRole: (roleName: string) => string | undefined,
): RecordedRequest | undefined {
    const role = /:assumed-role\/([^/]+)\//.exec(raw.principal)?.[1];
    const principal = role ? principalOfRole(role) : undefined;
    if (!principal) {
        return undefined;
    }
    const template = (value: string): string => {
        let out = value;
        for (const [token, name] of tokens(local)) {
            out = out.split(name).join(`{${token}}`);
        }
        out = out.split(`:${local.accountId}:`).join(":{account}:");
        out = out.split(`:${local.region}:`).join(":{region}:");
        out = out.split(`:${local.partition}:`).join(":{partition}:");
        out = out.split(local.kmsKeyId).join("{kms_key}");
        out = out.replace(/(\{hmac_secret\})-[A-Za-z0-9]{6}$/, "$1-{secret_suffix}");
        const s3 = /^(arn:\{partition\}:s3:::\{[a-z_]+\})\/(.+)$/.exec(out);
        if (s3) {
            out = `${s3[1]}/${generaliseKey(s3[2] as string)}`;
        }
        return out;
    };
    const context: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(raw.context ?? {})) {
        if (key === "s3:prefix" && typeof value === "string") {
            context[key] = value.includes("/") ? value.slice(0, value.indexOf("/") + 1) : value;
        } else if (typeof value === "string" || (Array.isArray(value) && value.every((v) => typeof v === "string"))) {
            context[key] = value as string | string[];
        }
    }
    return { principal, action: raw.action, resource: template(raw.resource), context, emulator: raw.decision };
}

/** The same request with one stack's names. */
export function instantiate(r: RecordedRequest, s: StackNames): RecordedRequest {
    const fill = (value: string): string => {
        let out = value;
        for (const [token, name] of tokens(s)) {
            out = out.split(`{${token}}`).join(name);
        }
        return out
            .split("{account}")
            .join(s.accountId)
            .split("{region}")
            .join(s.region)
            .split("{partition}")
            .join(s.partition)
            .split("{kms_key}")
            .join(s.kmsKeyId)
            .split("{secret_suffix}")
            .join(s.secretSuffix)
            .split(OBJECT)
            .join("k");
    };
    const context = Object.fromEntries(
        Object.entries(r.context).map(([k, v]) => [k, Array.isArray(v) ? v.map(fill) : fill(v)]),
    ) as Record<string, string | string[]>;
    return { ...r, resource: fill(r.resource), context };
}

const key = (r: RecordedRequest) => JSON.stringify([r.principal, r.action, r.resource, r.context, r.emulator]);

/** Distinct requests in a stable order. */
export function distinct(requests: RecordedRequest[]): RecordedRequest[] {
    const seen = new Map<string, RecordedRequest>();
    for (const r of requests) {
        seen.set(key(r), r);
    }
    return [...seen.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, r]) => r);
}

/**
 * A run against the committed record: `missing` are requests the run made that the record lacks (the
 * gate never evaluated them: the record is stale), `unseen` are recorded requests this run did not
 * make. Which retry, redrive or fault path a run takes depends on timing, so one run need not make
 * every recorded request; every request it makes must be recorded.
 */
export function compareRecord(run: RecordedRequest[], record: RecordedRequest[]): { missing: RecordedRequest[]; unseen: RecordedRequest[] } {
    const recorded = new Set(record.map(key));
    const made = new Set(run.map(key));
    return {
        missing: distinct(run.filter((r) => !recorded.has(key(r)))),
        unseen: distinct(record.filter((r) => !made.has(key(r)))),
    };
}

export function loadRequests(file: string = REQUESTS_PATH): RecordedRequest[] {
    return JSON.parse(fs.readFileSync(file, "utf8")).requests as RecordedRequest[];
}

export function serialiseRequests(requests: RecordedRequest[]): string {
    const doc = {
        comment:
            "Every request the functions and tools made in the end-to-end run, with the local emulator's decision. `cargo xtask test` fails when its run makes a request this does not hold; EVENTPIPE_AUTHZ_REFRESH=1 adds the run's requests, EVENTPIPE_AUTHZ_REFRESH=exact writes just the run's.",
        requests: distinct(requests),
    };
    return `${JSON.stringify(doc, null, 2)}\n`;
}
