// The environment file: one TOML file per environment in `environments/`.
//
// The Rust crate `pipeline-config` owns the schema; `environments/schema.json` is generated from its
// types. This module validates a file in two passes, like the Rust side: the JSON Schema (types,
// required keys, unknown keys) and then the semantic rules of `Environment::validate()` (ranges and
// cross-field rules), which a JSON Schema generated from Rust types does not carry.

import * as fs from "node:fs";
import * as path from "node:path";

import Ajv2020, { type ErrorObject, type ValidateFunction } from "ajv/dist/2020";
import { parse as parseToml } from "smol-toml";

export type StreamMode = "provisioned" | "on_demand";
export type StartingPosition = "TRIM_HORIZON" | "LATEST" | "AT_TIMESTAMP";

export interface StreamSettings {
    mode: StreamMode;
    /** Required for `provisioned`, ignored for `on_demand`. */
    shards?: number | null;
    retention_hours: number;
}

export interface FunctionSettings {
    memory_mb: number;
    timeout_seconds: number;
    /** Absent: unreserved. */
    reserved_concurrency?: number | null;
    /** `RUST_LOG`-style filter. */
    log_level: string;
}

export interface EventSourceMappingSettings {
    batch_size: number;
    maximum_batching_window_seconds: number;
    starting_position: StartingPosition;
    /** Unix seconds, only with `AT_TIMESTAMP`. */
    starting_position_timestamp?: number | null;
    parallelization_factor: number;
    bisect_batch_on_function_error: boolean;
    maximum_retry_attempts: number;
    maximum_record_age_seconds: number;
}

export interface AsyncInvokeSettings {
    maximum_retry_attempts: number;
    maximum_event_age_seconds: number;
}

/**
 * The auditor: a function on a schedule that finds the raw objects nobody will process and
 * re-drives them to the transformer (`services/auditor`).
 */
export interface AuditorSettings extends FunctionSettings {
    /** Minutes between runs (an EventBridge `rate()` schedule), 1-60. */
    period_minutes: number;
    /** Hours of `raw/` partitions (by first arrival) listed for objects without a metadata item, 1-168. */
    lookback_hours: number;
}

export interface StorageSettings {
    intelligent_tiering_after_days: number;
    quarantine_expiry_days: number;
    noncurrent_version_expiry_days: number;
    metadata_ttl_days: number;
    stuck_after_minutes: number;
    access_logging: boolean;
    retain_on_delete: boolean;
}

export interface ObservabilitySettings {
    log_retention_days: number;
    alarm_emails: string[];
    iterator_age_alarm_seconds: number;
    error_rate_alarm_percent: number;
    tracing: boolean;
}

export interface NetworkSettings {
    vpc: boolean;
    vpc_cidr?: string | null;
    cloudtrail: boolean;
}

/** One environment, with the defaults of the Rust types applied. */
export interface Environment {
    project: string;
    name: string;
    region: string;
    stream: StreamSettings;
    stream_processor: FunctionSettings;
    event_source_mapping: EventSourceMappingSettings;
    transformer: FunctionSettings;
    transformer_async: AsyncInvokeSettings;
    auditor: AuditorSettings;
    storage: StorageSettings;
    observability: ObservabilitySettings;
    network: NetworkSettings;
    tags: Record<string, string>;
}

/** An environment file that cannot be used; the message names the file and every problem. */
export class ConfigError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "ConfigError";
    }
}

/** The values CloudWatch Logs accepts for a log group's retention (`CLOUDWATCH_RETENTION_DAYS`). */
export const CLOUDWATCH_RETENTION_DAYS: readonly number[] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

/** The repository's `environments/` directory. */
export const DEFAULT_ENVIRONMENTS_DIR = path.resolve(__dirname, "..", "..", "environments");

/** `pr-<number>`: a pull-request preview stack (1-6 digits, as in `is_preview`). */
export function isPreview(name: string): boolean {
    return /^pr-[0-9]{1,6}$/.test(name);
}

/** The file that holds an environment: `pr-<n>` stacks use the preview template. */
export function fileNameFor(envName: string): string {
    if (envName === "local" || envName === "dev" || envName === "prod") {
        return `${envName}.toml`;
    }
    if (isPreview(envName)) {
        return "preview.toml";
    }
    throw new ConfigError(`environment name \`${envName}\` is not valid: use \`local\`, \`dev\`, \`prod\` or \`pr-<number>\``);
}

// Integer and float formats emitted by schemars for Rust number types.
const NUMBER_FORMATS: Record<string, (n: number) => boolean> = {
    int8: (n) => Number.isInteger(n) && n >= -128 && n <= 127,
    int16: (n) => Number.isInteger(n) && n >= -32768 && n <= 32767,
    int32: (n) => Number.isInteger(n) && n >= -2147483648 && n <= 2147483647,
    int64: (n) => Number.isInteger(n),
    int: (n) => Number.isInteger(n),
    uint8: (n) => Number.isInteger(n) && n >= 0 && n <= 255,
    uint16: (n) => Number.isInteger(n) && n >= 0 && n <= 65535,
    uint32: (n) => Number.isInteger(n) && n >= 0 && n <= 4294967295,
    uint64: (n) => Number.isInteger(n) && n >= 0,
    uint: (n) => Number.isInteger(n) && n >= 0,
    float: (n) => Number.isFinite(n),
    double: (n) => Number.isFinite(n),
};

const validatorCache = new Map<string, ValidateFunction>();

/** Compiles (once per file) the JSON Schema generated from the Rust types. */
export function schemaValidator(schemaPath: string): ValidateFunction {
    const cached = validatorCache.get(schemaPath);
    if (cached) {
        return cached;
    }
    let schema: unknown;
    try {
        schema = JSON.parse(fs.readFileSync(schemaPath, "utf8"));
    } catch (err) {
        throw new ConfigError(
            `cannot read the environment schema ${schemaPath}: ${(err as Error).message} ` +
                "(it is generated by `UPDATE_EXPECT=1 cargo test -p pipeline-config`)",
        );
    }
    const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
    for (const [name, validate] of Object.entries(NUMBER_FORMATS)) {
        ajv.addFormat(name, { type: "number", validate });
    }
    const validate = ajv.compile(schema as object);
    validatorCache.set(schemaPath, validate);
    return validate;
}

function describeSchemaError(e: ErrorObject): string {
    const where = e.instancePath === "" ? "the file" : `\`${e.instancePath.slice(1).replace(/\//g, ".")}\``;
    if (e.keyword === "additionalProperties") {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        return `unknown key \`${key}\` in ${where}`;
    }
    if (e.keyword === "required") {
        const key = (e.params as { missingProperty: string }).missingProperty;
        return `missing key \`${key}\` in ${where}`;
    }
    return `${where} ${e.message ?? "is invalid"}`;
}

const inRange = (n: number, lo: number, hi: number): boolean => Number.isInteger(n) && n >= lo && n <= hi;

/** The semantic rules of the Rust `Environment::validate()`, message for message. */
export function semanticErrors(env: Environment): string[] {
    const errors: string[] = [];
    const check = (ok: boolean, msg: string): void => {
        if (!ok) {
            errors.push(msg);
        }
    };
    check(
        env.project.length >= 1 && env.project.length <= 20 && /^[a-z0-9-]+$/.test(env.project) && !env.project.startsWith("-"),
        "`project` must be 1-20 lower-case letters, digits or dashes",
    );
    check(
        ["local", "dev", "prod", "preview"].includes(env.name) || isPreview(env.name),
        "`name` must be `local`, `dev`, `prod`, `preview` or `pr-<number>`",
    );
    if (env.stream.mode === "provisioned") {
        if (env.stream.shards === undefined || env.stream.shards === null) {
            check(false, "`stream.shards` is required when `stream.mode` is `provisioned`");
        } else {
            check(inRange(env.stream.shards, 1, 500), "`stream.shards` must be 1-500");
        }
    }
    check(inRange(env.stream.retention_hours, 24, 8760), "`stream.retention_hours` must be 24-8760");
    for (const [label, f] of [
        ["stream_processor", env.stream_processor],
        ["transformer", env.transformer],
        ["auditor", env.auditor],
    ] as const) {
        check(inRange(f.memory_mb, 128, 10240), `\`${label}.memory_mb\` must be 128-10240`);
        check(inRange(f.timeout_seconds, 1, 900), `\`${label}.timeout_seconds\` must be 1-900`);
    }
    check(inRange(env.auditor.period_minutes, 1, 60), "`auditor.period_minutes` must be 1-60");
    check(inRange(env.auditor.lookback_hours, 1, 168), "`auditor.lookback_hours` must be 1-168");
    const m = env.event_source_mapping;
    check(inRange(m.batch_size, 1, 10_000), "`event_source_mapping.batch_size` must be 1-10000");
    check(
        inRange(m.maximum_batching_window_seconds, 0, 300),
        "`event_source_mapping.maximum_batching_window_seconds` must be 0-300",
    );
    check(inRange(m.parallelization_factor, 1, 10), "`event_source_mapping.parallelization_factor` must be 1-10");
    check(
        inRange(m.maximum_retry_attempts, 0, 10_000),
        "`event_source_mapping.maximum_retry_attempts` must be finite: 0-10000",
    );
    check(
        inRange(m.maximum_record_age_seconds, 60, 604_800),
        "`event_source_mapping.maximum_record_age_seconds` must be finite: 60-604800",
    );
    const hasTimestamp = m.starting_position_timestamp !== undefined && m.starting_position_timestamp !== null;
    check(
        (m.starting_position === "AT_TIMESTAMP") === hasTimestamp,
        "`event_source_mapping.starting_position_timestamp` is required with `AT_TIMESTAMP` and only then",
    );
    check(inRange(env.transformer_async.maximum_retry_attempts, 0, 2), "`transformer_async.maximum_retry_attempts` must be 0-2");
    check(
        inRange(env.transformer_async.maximum_event_age_seconds, 60, 21_600),
        "`transformer_async.maximum_event_age_seconds` must be 60-21600",
    );
    check(env.storage.stuck_after_minutes >= 1, "`storage.stuck_after_minutes` must be at least 1");
    check(
        env.storage.quarantine_expiry_days >= 1 && env.storage.noncurrent_version_expiry_days >= 1,
        "expiry days in `storage` must be at least 1",
    );
    check(
        CLOUDWATCH_RETENTION_DAYS.includes(env.observability.log_retention_days),
        "`observability.log_retention_days` must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ...)",
    );
    check(
        env.observability.error_rate_alarm_percent > 0 && env.observability.error_rate_alarm_percent <= 100,
        "`observability.error_rate_alarm_percent` must be in (0, 100]",
    );
    check(
        !env.network.vpc || (env.network.vpc_cidr !== undefined && env.network.vpc_cidr !== null),
        "`network.vpc_cidr` is required when `network.vpc` is on",
    );
    return errors;
}

/**
 * Rules that only matter to a deployment by this program (the Rust side never creates a VPC or an
 * email subscription). They apply to files that the semantic rules accept.
 */
export function deploymentErrors(env: Environment): string[] {
    const errors: string[] = [];
    if (env.network.vpc && env.network.vpc_cidr) {
        const parsed = parseCidr(env.network.vpc_cidr);
        if (!parsed) {
            errors.push("`network.vpc_cidr` must be an IPv4 CIDR such as `10.42.0.0/16`");
        } else if (parsed.prefix < 16 || parsed.prefix > 24) {
            errors.push("`network.vpc_cidr` must have a prefix length of 16-24 (room for one /+4 subnet per zone)");
        }
    }
    for (const email of env.observability.alarm_emails) {
        if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
            errors.push(`\`observability.alarm_emails\`: \`${email}\` is not an email address`);
        }
    }
    for (const [key, value] of Object.entries(env.tags)) {
        if (key.length < 1 || key.length > 128 || value.length > 256 || key.toLowerCase().startsWith("aws:")) {
            errors.push(`\`tags.${key}\`: AWS tag keys are 1-128 characters, values at most 256, and \`aws:\` is reserved`);
        }
    }
    return errors;
}

/** An IPv4 CIDR as a 32-bit network address and a prefix length, or undefined. */
export function parseCidr(cidr: string): { address: number; prefix: number } | undefined {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
    if (!m) {
        return undefined;
    }
    const octets = m.slice(1, 5).map(Number);
    const prefix = Number(m[5]);
    if (octets.some((o) => o > 255) || prefix > 32) {
        return undefined;
    }
    const address = octets.reduce((acc, o) => acc * 256 + o, 0);
    const size = 2 ** (32 - prefix);
    if (address % size !== 0) {
        return undefined; // host bits set
    }
    return { address, prefix };
}

function withDefaults(raw: Record<string, unknown>): Environment {
    // Plain objects (the TOML parser returns null-prototype ones); the schema admits JSON values only.
    const env = JSON.parse(JSON.stringify(raw)) as Environment;
    const network = (env.network ?? {}) as Partial<NetworkSettings>;
    env.network = { vpc: network.vpc ?? false, vpc_cidr: network.vpc_cidr ?? null, cloudtrail: network.cloudtrail ?? false };
    env.tags = env.tags ?? {};
    env.observability.alarm_emails = env.observability.alarm_emails ?? [];
    return env;
}

export interface LoadOptions {
    /** Directory of the environment files; default: the repository's `environments/`. */
    dir?: string;
    /** The JSON Schema; default: `schema.json` in `dir`. */
    schemaPath?: string;
}

/** Parses and validates an environment file's text; `label` only names the file in errors. */
export function parseEnvironment(label: string, text: string, schemaPath: string): Environment {
    let raw: unknown;
    try {
        raw = parseToml(text);
    } catch (err) {
        throw new ConfigError(`environment file ${label}: ${(err as Error).message}`);
    }
    const validate = schemaValidator(schemaPath);
    if (!validate(raw)) {
        const problems = (validate.errors ?? []).map(describeSchemaError);
        throw new ConfigError(`environment file ${label}: ${[...new Set(problems)].join("; ")}`);
    }
    const env = withDefaults(raw as Record<string, unknown>);
    const semantic = semanticErrors(env);
    if (semantic.length > 0) {
        throw new ConfigError(`environment file ${label}: ${semantic.join("; ")}`);
    }
    return env;
}

/**
 * The environment of a stack: `dev` → `dev.toml`, `pr-42` → `preview.toml` named `pr-42`. A file
 * whose `name` differs from the stack (other than the preview template) is an error.
 */
export function loadEnvironment(stack: string, options: LoadOptions = {}): Environment {
    const dir = options.dir ?? DEFAULT_ENVIRONMENTS_DIR;
    const schemaPath = options.schemaPath ?? path.join(dir, "schema.json");
    const file = fileNameFor(stack);
    const filePath = path.join(dir, file);
    let text: string;
    try {
        text = fs.readFileSync(filePath, "utf8");
    } catch (err) {
        throw new ConfigError(`cannot read environment file ${filePath}: ${(err as Error).message}`);
    }
    const env = parseEnvironment(file, text, schemaPath);
    if (isPreview(stack)) {
        env.name = stack;
    } else if (env.name !== stack) {
        throw new ConfigError(`environment file ${file}: \`name\` is \`${env.name}\` but the stack is \`${stack}\``);
    }
    const deployment = deploymentErrors(env);
    if (deployment.length > 0) {
        throw new ConfigError(`environment file ${file}: ${deployment.join("; ")}`);
    }
    return env;
}
