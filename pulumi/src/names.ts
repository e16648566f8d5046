// Resource names. `names()` is the Rust `Environment::names()`, key for key: every stack and the local
// runtime agree on them. `extraNames()` names what only the Pulumi program creates, by the same rule.

import type { Environment } from "./config";
// Generated from `pipeline-core` (`UPDATE_EXPECT=1 cargo test -p xtask contract`): the one definition.
import contract from "./contract.json";

/** The Rust `Names` struct, serialised with its field names. */
export interface Names {
    stream: string;
    raw_bucket: string;
    processed_bucket: string;
    metadata_table: string;
    stream_processor: string;
    transformer: string;
    auditor: string;
    stream_dlq: string;
    transform_dlq: string;
    alarm_topic: string;
    hmac_secret: string;
}

/** The metadata table's sparse index of raw objects that are not processed yet. */
export const PENDING_INDEX: string = contract.metadata.pendingIndex;
/**
 * The values `pending` (the index's hash key) takes while a raw object is not processed, in bucket
 * order: the stream processor puts each raw object in one bucket, derived from its key
 * (`pipeline_core::metadata::pending_bucket`), so no index partition takes every write; finding
 * the objects not processed after some time is one query per bucket.
 */
export const PENDING_VALUES: readonly string[] = contract.metadata.pendingValues;
/** How many buckets `pending` has. */
export const PENDING_BUCKETS = PENDING_VALUES.length;
/** S3 key prefixes (`pipeline_core::keys`). */
export const RAW_PREFIX: string = contract.prefixes.raw;
export const QUARANTINE_PREFIX: string = contract.prefixes.quarantine;
export const PROCESSED_PREFIX: string = contract.prefixes.processed;

/** `<project>-<environment>`: the first two components of every name. */
export function namePrefix(env: Pick<Environment, "project" | "name">): string {
    return `${env.project}-${env.name}`;
}

export function names(env: Pick<Environment, "project" | "name">, accountId: string): Names {
    const p = namePrefix(env);
    return {
        stream: `${p}-events`,
        raw_bucket: `${p}-raw-${accountId}`,
        processed_bucket: `${p}-processed-${accountId}`,
        metadata_table: `${p}-metadata`,
        stream_processor: `${p}-stream-processor`,
        transformer: `${p}-transformer`,
        auditor: `${p}-auditor`,
        stream_dlq: `${p}-stream-dlq`,
        transform_dlq: `${p}-transform-dlq`,
        alarm_topic: `${p}-alarms`,
        hmac_secret: `${p}/pii-hmac-key`,
    };
}

/** Names of resources that only the Pulumi program creates. */
export interface ExtraNames {
    kmsAlias: string;
    accessLogBucket: string;
    trailBucket: string;
    trail: string;
    streamProcessorRole: string;
    transformerRole: string;
    auditorRole: string;
    /** The roles of the tools that act on a stack (components/access.ts). */
    producerRole: string;
    operatorRole: string;
    streamProcessorLogGroup: string;
    transformerLogGroup: string;
    auditorLogGroup: string;
    /** The EventBridge rule that runs the auditor. */
    auditorSchedule: string;
    dashboard: string;
    glueDatabase: string;
    glueTable: string;
    vpc: string;
}

export function extraNames(env: Pick<Environment, "project" | "name">, accountId: string): ExtraNames {
    const p = namePrefix(env);
    const n = names(env, accountId);
    return {
        kmsAlias: `alias/${p}`,
        accessLogBucket: `${p}-access-logs-${accountId}`,
        trailBucket: `${p}-trail-${accountId}`,
        trail: `${p}-data-events`,
        streamProcessorRole: `${n.stream_processor}-role`,
        transformerRole: `${n.transformer}-role`,
        auditorRole: `${n.auditor}-role`,
        producerRole: `${p}-producer`,
        operatorRole: `${p}-operator`,
        streamProcessorLogGroup: `/aws/lambda/${n.stream_processor}`,
        transformerLogGroup: `/aws/lambda/${n.transformer}`,
        auditorLogGroup: `/aws/lambda/${n.auditor}`,
        auditorSchedule: `${n.auditor}-schedule`,
        dashboard: p,
        // Glue and Athena names: lower case, digits and underscores.
        glueDatabase: p.replace(/-/g, "_"),
        glueTable: "events",
        vpc: p,
    };
}

/** CloudWatch alarm names, one per alarm the Observability component creates. */
export function alarmNames(env: Pick<Environment, "project" | "name">, accountId: string) {
    const n = names(env, accountId);
    return {
        streamProcessorErrorRate: `${n.stream_processor}-error-rate`,
        streamProcessorThrottles: `${n.stream_processor}-throttles`,
        transformerErrorRate: `${n.transformer}-error-rate`,
        transformerThrottles: `${n.transformer}-throttles`,
        auditorStuckObjects: `${n.auditor}-stuck-objects`,
        auditorErrors: `${n.auditor}-errors`,
        iteratorAge: `${n.stream}-iterator-age`,
        streamDlqNotEmpty: `${n.stream_dlq}-not-empty`,
        transformDlqNotEmpty: `${n.transform_dlq}-not-empty`,
    };
}
