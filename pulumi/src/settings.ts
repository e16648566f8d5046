// The settings that both the local provisioner (Rust) and this program express for an environment.
//
// The Pulumi components take these values from here, and `test/parity.test.ts` compares them with
// the Rust side's output (`test/fixtures/local-settings.json`), so the two cannot drift apart.

import type { Environment, StartingPosition } from "./config";
import { extraNames, names, RAW_PREFIX, type Names } from "./names";

export interface EventSourceMappingExpression {
    batchSize: number;
    maximumBatchingWindowInSeconds: number;
    startingPosition: StartingPosition;
    parallelizationFactor: number;
    bisectBatchOnFunctionError: boolean;
    maximumRetryAttempts: number;
    maximumRecordAgeInSeconds: number;
    functionResponseTypes: string[];
}

export interface NotificationExpression {
    /** The raw bucket's ObjectCreated notification to the transformer is filtered to this prefix. */
    prefix: string;
    events: string[];
}

export interface AsyncInvokeExpression {
    maximumRetryAttempts: number;
    maximumEventAgeInSeconds: number;
}

export interface AuditorScheduleExpression {
    /** The EventBridge rule that runs the auditor. */
    ruleName: string;
    scheduleExpression: string;
}

export interface ExpressedSettings {
    names: Names;
    eventSourceMapping: EventSourceMappingExpression;
    notification: NotificationExpression;
    transformerAsync: AsyncInvokeExpression;
    auditorSchedule: AuditorScheduleExpression;
}

/** EventBridge's schedule expression for one run every `minutes` minutes (the unit is singular for 1). */
export function scheduleExpression(minutes: number): string {
    if (!Number.isInteger(minutes) || minutes < 1) {
        throw new Error(`a schedule runs every whole number of minutes, not ${minutes}`);
    }
    return minutes === 1 ? "rate(1 minute)" : `rate(${minutes} minutes)`;
}

/** The S3 events that invoke the transformer. */
export const NOTIFICATION_EVENTS = ["s3:ObjectCreated:*"] as const;
/** The stream processor reports partial batch failures (`BatchItemFailures`). */
export const FUNCTION_RESPONSE_TYPES = ["ReportBatchItemFailures"] as const;

export function expressedSettings(env: Environment, accountId: string): ExpressedSettings {
    const m = env.event_source_mapping;
    return {
        names: names(env, accountId),
        eventSourceMapping: {
            batchSize: m.batch_size,
            maximumBatchingWindowInSeconds: m.maximum_batching_window_seconds,
            startingPosition: m.starting_position,
            parallelizationFactor: m.parallelization_factor,
            bisectBatchOnFunctionError: m.bisect_batch_on_function_error,
            maximumRetryAttempts: m.maximum_retry_attempts,
            maximumRecordAgeInSeconds: m.maximum_record_age_seconds,
            functionResponseTypes: [...FUNCTION_RESPONSE_TYPES],
        },
        notification: {
            prefix: RAW_PREFIX,
            events: [...NOTIFICATION_EVENTS],
        },
        transformerAsync: {
            maximumRetryAttempts: env.transformer_async.maximum_retry_attempts,
            maximumEventAgeInSeconds: env.transformer_async.maximum_event_age_seconds,
        },
        auditorSchedule: {
            ruleName: extraNames(env, accountId).auditorSchedule,
            scheduleExpression: scheduleExpression(env.auditor.period_minutes),
        },
    };
}
