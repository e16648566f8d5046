import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import contract from "../contract.json";
import { arn, policyDocument, servicePrincipal, type Context } from "../iam";
import { alarmNames, namePrefix } from "../names";

/**
 * The namespace and dimension of the metrics the functions emit in CloudWatch embedded metric
 * format, and the names each function emits: generated from `pipeline_aws::emf` (the tests check
 * that every metric charted or alarmed on below is one of them).
 */
export const EMF_NAMESPACE: string = contract.metrics.namespace;
export const EMF_DIMENSION: string = contract.metrics.dimension;
export const EMITTED = {
    streamProcessor: contract.metrics.streamProcessor as readonly string[],
    transformer: contract.metrics.transformer as readonly string[],
    auditor: contract.metrics.auditor as readonly string[],
};

/** Where each alarm's runbook lives; the alarm description points there. */
export const RUNBOOK = "docs/operations.md";

export interface ObservabilityArgs {
    ctx: Context;
    kmsKeyArn: pulumi.Input<string>;
    streamName: pulumi.Input<string>;
    functionNames: { streamProcessor: pulumi.Input<string>; transformer: pulumi.Input<string>; auditor: pulumi.Input<string> };
    queueNames: { streamDlq: pulumi.Input<string>; transformDlq: pulumi.Input<string> };
}

/**
 * The alarm topic (KMS-encrypted, email subscriptions from the environment file), the alarms and
 * the dashboard. Every alarm notifies the topic when it fires and when it recovers.
 */
export class Observability extends pulumi.ComponentResource {
    readonly topic: aws.sns.Topic;
    readonly alarms: aws.cloudwatch.MetricAlarm[] = [];
    readonly dashboard: aws.cloudwatch.Dashboard;

    constructor(name: string, args: ObservabilityArgs, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Observability", name, {}, opts);
        const { ctx } = args;
        const { env, names } = ctx;
        const alarm = alarmNames(env, ctx.accountId);

        this.topic = new aws.sns.Topic(
            `${name}-alarms`,
            { name: names.alarm_topic, kmsMasterKeyId: args.kmsKeyArn },
            { parent: this },
        );
        new aws.sns.TopicPolicy(
            `${name}-alarms`,
            {
                arn: this.topic.arn,
                policy: policyDocument([
                    {
                        Sid: "PipelineAlarmsPublish",
                        Effect: "Allow",
                        Principal: { Service: servicePrincipal("cloudwatch") },
                        Action: "sns:Publish",
                        Resource: this.topic.arn,
                        Condition: {
                            ArnLike: { "aws:SourceArn": arn(ctx, "cloudwatch", `alarm:${namePrefix(env)}-*`) },
                            StringEquals: { "aws:SourceAccount": ctx.accountId },
                        },
                    },
                ]),
            },
            { parent: this },
        );
        env.observability.alarm_emails.forEach((email, i) => {
            new aws.sns.TopicSubscription(
                `${name}-email-${i}`,
                { topic: this.topic.arn, protocol: "email", endpoint: email },
                { parent: this },
            );
        });

        const actions = [this.topic.arn];
        const common = {
            alarmActions: actions,
            okActions: actions,
            treatMissingData: "notBreaching",
        };
        const add = (logical: string, alarmArgs: aws.cloudwatch.MetricAlarmArgs) => {
            this.alarms.push(new aws.cloudwatch.MetricAlarm(`${name}-${logical}`, { ...common, ...alarmArgs }, { parent: this }));
        };

        const functions = [
            { key: "stream-processor", fn: args.functionNames.streamProcessor, errorRate: alarm.streamProcessorErrorRate, throttles: alarm.streamProcessorThrottles },
            { key: "transformer", fn: args.functionNames.transformer, errorRate: alarm.transformerErrorRate, throttles: alarm.transformerThrottles },
        ];
        for (const f of functions) {
            const lambdaMetric = (metricName: string) => ({
                namespace: "AWS/Lambda",
                metricName,
                dimensions: { FunctionName: f.fn },
                period: 60,
                stat: "Sum",
            });
            add(`${f.key}-error-rate`, {
                name: f.errorRate,
                alarmDescription: `${f.key}: more than ${env.observability.error_rate_alarm_percent}% of invocations failed in 3 of 5 minutes. Runbook: ${RUNBOOK}#function-error-rate`,
                comparisonOperator: "GreaterThanThreshold",
                threshold: env.observability.error_rate_alarm_percent,
                evaluationPeriods: 5,
                datapointsToAlarm: 3,
                metricQueries: [
                    { id: "errors", metric: lambdaMetric("Errors"), returnData: false },
                    { id: "invocations", metric: lambdaMetric("Invocations"), returnData: false },
                    {
                        id: "error_rate",
                        expression: "IF(invocations > 0, 100 * FILL(errors, 0) / invocations, 0)",
                        label: "Error rate (%)",
                        returnData: true,
                    },
                ],
            });
            add(`${f.key}-throttles`, {
                name: f.throttles,
                alarmDescription: `${f.key}: invocations were throttled. Runbook: ${RUNBOOK}#function-throttles`,
                comparisonOperator: "GreaterThanThreshold",
                threshold: 0,
                evaluationPeriods: 1,
                namespace: "AWS/Lambda",
                metricName: "Throttles",
                dimensions: { FunctionName: f.fn },
                period: 60,
                statistic: "Sum",
            });
        }

        // The auditor runs once a period and emits its metrics once a run: its alarms look at one
        // period at a time.
        const auditorPeriod = env.auditor.period_minutes * 60;
        add("auditor-stuck-objects", {
            name: alarm.auditorStuckObjects,
            alarmDescription: `auditor: raw objects are not processed ${env.storage.stuck_after_minutes} minutes after they were written (the auditor re-drives those that became stuck in its last two periods). Runbook: ${RUNBOOK}#stuck-raw-objects`,
            comparisonOperator: "GreaterThanThreshold",
            threshold: 0,
            evaluationPeriods: 1,
            namespace: EMF_NAMESPACE,
            metricName: "StuckObjects",
            dimensions: { [EMF_DIMENSION]: args.functionNames.auditor },
            period: auditorPeriod,
            statistic: "Maximum",
        });
        add("auditor-errors", {
            name: alarm.auditorErrors,
            alarmDescription: `auditor: runs failed in two periods in a row (${env.auditor.period_minutes} min each), so stuck objects are neither found nor re-driven. Runbook: ${RUNBOOK}#auditor-errors`,
            comparisonOperator: "GreaterThanThreshold",
            threshold: 0,
            evaluationPeriods: 2,
            datapointsToAlarm: 2,
            namespace: "AWS/Lambda",
            metricName: "Errors",
            dimensions: { FunctionName: args.functionNames.auditor },
            period: auditorPeriod,
            statistic: "Sum",
        });

        add("iterator-age", {
            name: alarm.iteratorAge,
            alarmDescription: `The oldest unread record of the stream is older than ${env.observability.iterator_age_alarm_seconds} s in 3 of 5 minutes. Runbook: ${RUNBOOK}#stream-iterator-age`,
            comparisonOperator: "GreaterThanThreshold",
            threshold: env.observability.iterator_age_alarm_seconds * 1000,
            evaluationPeriods: 5,
            datapointsToAlarm: 3,
            namespace: "AWS/Kinesis",
            metricName: "GetRecords.IteratorAgeMilliseconds",
            dimensions: { StreamName: args.streamName },
            period: 60,
            statistic: "Maximum",
        });

        for (const [key, queue, alarmName] of [
            ["stream-dlq", args.queueNames.streamDlq, alarm.streamDlqNotEmpty],
            ["transform-dlq", args.queueNames.transformDlq, alarm.transformDlqNotEmpty],
        ] as const) {
            add(`${key}-not-empty`, {
                name: alarmName,
                alarmDescription: `${key}: messages are waiting in the dead letter queue. Runbook: ${RUNBOOK}#dead-letter-queue-not-empty`,
                comparisonOperator: "GreaterThanThreshold",
                threshold: 0,
                evaluationPeriods: 1,
                namespace: "AWS/SQS",
                metricName: "ApproximateNumberOfMessagesVisible",
                dimensions: { QueueName: queue },
                period: 60,
                statistic: "Maximum",
            });
        }

        this.dashboard = new aws.cloudwatch.Dashboard(
            `${name}-dashboard`,
            {
                dashboardName: ctx.extra.dashboard,
                dashboardBody: pulumi
                    .all([
                        args.streamName,
                        args.functionNames.streamProcessor,
                        args.functionNames.transformer,
                        args.functionNames.auditor,
                        args.queueNames.streamDlq,
                        args.queueNames.transformDlq,
                    ])
                    .apply(([stream, sp, tr, au, sdlq, tdlq]) =>
                        JSON.stringify(
                            dashboardBody(ctx.region, {
                                stream,
                                functions: [sp, tr],
                                auditor: { name: au, periodSeconds: auditorPeriod },
                                queues: [sdlq, tdlq],
                            }),
                        ),
                    ),
            },
            { parent: this },
        );

        this.registerOutputs({ topicArn: this.topic.arn, dashboard: this.dashboard.dashboardName });
    }
}

type MetricLine = (string | Record<string, unknown>)[];

interface Widget {
    type: "metric" | "text";
    x: number;
    y: number;
    width: number;
    height: number;
    properties: Record<string, unknown>;
}

/**
 * The dashboard: stream, functions, dead letter queues and the pipeline's own metrics. `functions`
 * are the two that move data; the auditor has the Lambda rows and a row of its own metrics, drawn
 * at its schedule's period (one data point a run).
 */
export function dashboardBody(
    region: string,
    r: { stream: string; functions: string[]; auditor: { name: string; periodSeconds: number }; queues: string[] },
): { widgets: Widget[] } {
    const widgets: Widget[] = [];
    let y = 0;
    const row = (cells: { title: string; metrics: MetricLine[]; stat?: string; period?: number; yAxis?: Record<string, unknown> }[]) => {
        const width = 24 / cells.length;
        cells.forEach((c, i) => {
            widgets.push({
                type: "metric",
                x: i * width,
                y,
                width,
                height: 6,
                properties: {
                    title: c.title,
                    region,
                    view: "timeSeries",
                    stacked: false,
                    stat: c.stat ?? "Sum",
                    period: c.period ?? 60,
                    metrics: c.metrics,
                    ...(c.yAxis ? { yAxis: c.yAxis } : {}),
                },
            });
        });
        y += 6;
    };
    const perFunction = (namespace: string, metric: string, dimension: string, extra: Record<string, unknown> = {}): MetricLine[] =>
        r.functions.map((fn) => [namespace, metric, dimension, fn, { label: `${fn} ${metric}`, ...extra }]);
    const lambdaFunctions = [...r.functions, r.auditor.name];
    const perLambda = (metric: string, extra: Record<string, unknown> = {}): MetricLine[] =>
        lambdaFunctions.map((fn) => ["AWS/Lambda", metric, "FunctionName", fn, { label: `${fn} ${metric}`, ...extra }]);

    widgets.push({
        type: "text",
        x: 0,
        y,
        width: 24,
        height: 2,
        properties: {
            markdown: `## ${r.stream}\nStream → stream processor → raw bucket → transformer → processed bucket; the auditor re-drives stuck raw objects. Alarms and runbooks: \`${RUNBOOK}\`.`,
        },
    });
    y += 2;
    row([
        { title: "Stream: incoming records", metrics: [["AWS/Kinesis", "IncomingRecords", "StreamName", r.stream]] },
        { title: "Stream: incoming bytes", metrics: [["AWS/Kinesis", "IncomingBytes", "StreamName", r.stream]] },
        {
            title: "Stream: iterator age (ms)",
            stat: "Maximum",
            metrics: [["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", r.stream]],
        },
    ]);
    row([
        { title: "Functions: invocations", metrics: perLambda("Invocations") },
        { title: "Functions: errors", metrics: perLambda("Errors") },
        { title: "Functions: throttles", metrics: perLambda("Throttles") },
    ]);
    row([
        {
            title: "Functions: duration p50 / p99 (ms)",
            stat: "p50",
            metrics: [
                ...perLambda("Duration", { stat: "p50" }),
                ...lambdaFunctions.map((fn) => ["AWS/Lambda", "Duration", "FunctionName", fn, { stat: "p99", label: `${fn} Duration p99` }]),
            ],
        },
        {
            title: "Dead letter queues: visible messages",
            stat: "Maximum",
            metrics: r.queues.map((q) => ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q]),
        },
    ]);
    const emf = (metric: string, extra: Record<string, unknown> = {}) => perFunction(EMF_NAMESPACE, metric, EMF_DIMENSION, extra);
    row([
        {
            title: "Pipeline: records",
            metrics: [...emf("RecordsReceived"), ...emf("RecordsValid"), ...emf("RecordsQuarantined"), ...emf("RecordsFailed"), ...emf("DuplicatesDropped")],
        },
        { title: "Pipeline: objects written", metrics: emf("ObjectsWritten") },
        { title: "Pipeline: bytes written", metrics: emf("BytesWritten") },
    ]);
    row([
        {
            title: "Pipeline: ingest lag p50 / p99 (ms)",
            stat: "p50",
            metrics: [...emf("IngestLagMs", { stat: "p50" }), ...r.functions.map((fn) => [EMF_NAMESPACE, "IngestLagMs", EMF_DIMENSION, fn, { stat: "p99", label: `${fn} IngestLagMs p99` }])],
        },
        {
            title: "Pipeline: handler duration p99 (ms)",
            stat: "p99",
            metrics: emf("DurationMs", { stat: "p99" }),
        },
        { title: "Pipeline: cold starts", metrics: emf("ColdStart") },
    ]);
    const au = r.auditor.name;
    const auditor = (metric: string): MetricLine => [EMF_NAMESPACE, metric, EMF_DIMENSION, au, { label: metric }];
    row([
        {
            title: "Auditor: stuck objects (alarm above 0)",
            stat: "Maximum",
            period: r.auditor.periodSeconds,
            metrics: ["StuckObjects", "StuckNotProcessed", "StuckNoItem", "OrphanObjects"].map(auditor),
        },
        {
            title: "Auditor: re-driven, listed, failed runs",
            period: r.auditor.periodSeconds,
            metrics: ["Redriven", "RawObjectsListed", "InvocationsFailed"].map(auditor),
        },
        {
            title: "Auditor: run duration (ms), cold starts",
            stat: "Maximum",
            period: r.auditor.periodSeconds,
            metrics: [auditor("DurationMs"), [EMF_NAMESPACE, "ColdStart", EMF_DIMENSION, au, { label: "ColdStart", stat: "Sum", yAxis: "right" }]],
        },
    ]);
    return { widgets };
}
