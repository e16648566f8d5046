// The whole stack: one environment, one artifact build, every component.

import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { artifactsFromEnv, FUNCTION_KEYS, type Artifacts, type FunctionKey } from "./artifacts";
import { loadEnvironment, type Environment, type LoadOptions } from "./config";
import { Access } from "./components/access";
import { Audit } from "./components/audit";
import { Auditor } from "./components/auditor";
import { Catalog } from "./components/catalog";
import { Ingest } from "./components/ingest";
import { Network } from "./components/network";
import { Observability } from "./components/observability";
import { Storage } from "./components/storage";
import { Transform } from "./components/transform";
import type { Context } from "./iam";
import { extraNames, names, PENDING_INDEX } from "./names";
import { expressedSettings } from "./settings";

export const GIT_SHA_ENV_VAR = "GIT_SHA";

/**
 * Tags on every resource, through the provider's `defaultTags`. Fixed keys win over `tags`. The
 * commit is not a tag: a tag that changes on every deployment updates every resource every time
 * and buries the real change in the pull request's preview diff (see `describeWithCommit`).
 */
export function defaultTags(env: Environment): Record<string, string> {
    return { ...env.tags, project: env.project, environment: env.name };
}

/** Lambda's limit on a function's description. */
export const LAMBDA_DESCRIPTION_MAX = 256;

/**
 * The deploying commit lives where changing only the commit touches nothing else: the stack
 * output `gitSha` and the functions' descriptions, after the artifact digest
 * (`aws lambda get-function` shows both). A transformation, so that `pipelineFunction` keeps one
 * description format and its signature.
 */
export function describeWithCommit(gitSha: string): pulumi.ResourceTransformation {
    return ({ type, name, props, opts }) => {
        if (type !== "aws:lambda/function:Function") {
            return undefined;
        }
        if (typeof props.description !== "string") {
            throw new Error(`function ${name} has no plain description to add the commit to`);
        }
        const description = `${props.description}, deployed from commit ${gitSha}`;
        if (description.length > LAMBDA_DESCRIPTION_MAX) {
            throw new Error(`${GIT_SHA_ENV_VAR} \`${gitSha}\` makes the description of ${name} longer than Lambda's ${LAMBDA_DESCRIPTION_MAX} characters`);
        }
        return { props: { ...props, description }, opts };
    };
}

export function gitShaFromEnv(vars: NodeJS.ProcessEnv = process.env): string {
    const sha = vars[GIT_SHA_ENV_VAR]?.trim();
    return sha ? sha : "unknown";
}

export interface PipelineArgs {
    env: Environment;
    artifacts: Artifacts;
    gitSha: string;
    /**
     * Only the authorisation renderer (authz/render.ts) sets this: it runs the program under mocks
     * for another environment's file with the local stack's names, to read the documents the local
     * emulator enforces. `local` is never a Pulumi stack.
     */
    forLocalEmulator?: boolean;
}

/** Stack outputs: every name and ARN an operator, `xtask smoke` or `xtask promote` needs. */
export interface PipelineOutputs {
    environment: string;
    region: string;
    accountId: string;
    gitSha: string;
    artifactGitSha: string;
    artifactDigests: Record<FunctionKey, string>;
    kmsKeyArn: pulumi.Output<string>;
    streamName: pulumi.Output<string>;
    streamArn: pulumi.Output<string>;
    rawBucketName: pulumi.Output<string>;
    rawBucketArn: pulumi.Output<string>;
    processedBucketName: pulumi.Output<string>;
    processedBucketArn: pulumi.Output<string>;
    accessLogBucketName: pulumi.Output<string> | undefined;
    metadataTableName: pulumi.Output<string>;
    metadataTableArn: pulumi.Output<string>;
    pendingIndexName: string;
    streamProcessorFunctionName: pulumi.Output<string>;
    streamProcessorFunctionArn: pulumi.Output<string>;
    streamProcessorLogGroup: pulumi.Output<string>;
    transformerFunctionName: pulumi.Output<string>;
    transformerFunctionArn: pulumi.Output<string>;
    transformerLogGroup: pulumi.Output<string>;
    auditorFunctionName: pulumi.Output<string>;
    auditorFunctionArn: pulumi.Output<string>;
    auditorLogGroup: pulumi.Output<string>;
    auditorScheduleRuleName: pulumi.Output<string>;
    streamDlqUrl: pulumi.Output<string>;
    streamDlqArn: pulumi.Output<string>;
    transformDlqUrl: pulumi.Output<string>;
    transformDlqArn: pulumi.Output<string>;
    alarmTopicArn: pulumi.Output<string>;
    dashboardName: pulumi.Output<string>;
    hmacSecretName: pulumi.Output<string>;
    hmacSecretArn: pulumi.Output<string>;
    glueDatabaseName: pulumi.Output<string>;
    glueTableName: pulumi.Output<string>;
    vpcId: pulumi.Output<string> | undefined;
    trailName: pulumi.Output<string> | undefined;
    producerRoleArn: pulumi.Output<string>;
    operatorRoleArn: pulumi.Output<string>;
}

/** Builds every resource of one environment. Runs inside a Pulumi program (or the test mocks). */
export async function createPipeline(args: PipelineArgs): Promise<PipelineOutputs> {
    const { env, artifacts, gitSha } = args;
    if (env.name === "local" && !args.forLocalEmulator) {
        throw new Error("the `local` environment runs against the local emulator (`cargo xtask local`); it is not a Pulumi stack");
    }

    const provider = new aws.Provider("aws", {
        region: env.region as aws.Region,
        defaultTags: { tags: defaultTags(env) },
    });
    const invokeOpts = { provider };
    const [identity, partition] = await Promise.all([
        aws.getCallerIdentity({}, invokeOpts),
        aws.getPartition({}, invokeOpts),
    ]);
    const accountId = identity.accountId;
    const ctx: Context = {
        env,
        names: names(env, accountId),
        extra: extraNames(env, accountId),
        accountId,
        partition: partition.partition,
        region: env.region,
        dnsSuffix: partition.dnsSuffix,
        provider,
    };
    const settings = expressedSettings(env, accountId);
    const opts: pulumi.ComponentResourceOptions = { providers: { aws: provider }, transformations: [describeWithCommit(gitSha)] };

    const storage = new Storage("storage", { ctx }, opts);

    let network: Network | undefined;
    if (env.network.vpc) {
        const zones = await aws.getAvailabilityZones({ state: "available" }, invokeOpts);
        network = new Network("network", { ctx, zones: zones.names }, opts);
    }

    const ingest = new Ingest(
        "ingest",
        { ctx, settings, storage, artifact: artifacts.functions["stream-processor"], network: network?.functionNetwork },
        opts,
    );
    const transform = new Transform(
        "transform",
        { ctx, settings, storage, artifact: artifacts.functions.transformer, network: network?.functionNetwork },
        opts,
    );
    const auditor = new Auditor(
        "auditor",
        { ctx, storage, transform, artifact: artifacts.functions.auditor, network: network?.functionNetwork },
        opts,
    );
    const observability = new Observability(
        "observability",
        {
            ctx,
            kmsKeyArn: storage.key.arn,
            streamName: ingest.stream.name,
            functionNames: { streamProcessor: ingest.fn.name, transformer: transform.fn.name, auditor: auditor.fn.name },
            queueNames: { streamDlq: ingest.dlq.name, transformDlq: transform.dlq.name },
        },
        opts,
    );
    const access = new Access("access", { ctx, storage, ingest, transform }, opts);
    const catalog = new Catalog("catalog", { ctx }, opts);
    const audit = env.network.cloudtrail ? new Audit("audit", { ctx, storage }, opts) : undefined;

    return {
        environment: env.name,
        region: env.region,
        accountId,
        gitSha,
        artifactGitSha: artifacts.gitSha,
        artifactDigests: Object.fromEntries(FUNCTION_KEYS.map((fn) => [fn, artifacts.functions[fn].sha256])) as Record<FunctionKey, string>,
        kmsKeyArn: storage.key.arn,
        streamName: ingest.stream.name,
        streamArn: ingest.stream.arn,
        rawBucketName: storage.raw.name,
        rawBucketArn: storage.raw.arn,
        processedBucketName: storage.processed.name,
        processedBucketArn: storage.processed.arn,
        accessLogBucketName: storage.accessLogs?.name,
        metadataTableName: storage.table.name,
        metadataTableArn: storage.table.arn,
        pendingIndexName: PENDING_INDEX,
        streamProcessorFunctionName: ingest.fn.name,
        streamProcessorFunctionArn: ingest.fn.arn,
        streamProcessorLogGroup: ingest.logGroup.name,
        transformerFunctionName: transform.fn.name,
        transformerFunctionArn: transform.fn.arn,
        transformerLogGroup: transform.logGroup.name,
        auditorFunctionName: auditor.fn.name,
        auditorFunctionArn: auditor.fn.arn,
        auditorLogGroup: auditor.logGroup.name,
        auditorScheduleRuleName: auditor.rule.name,
        streamDlqUrl: ingest.dlq.url,
        streamDlqArn: ingest.dlq.arn,
        transformDlqUrl: transform.dlq.url,
        transformDlqArn: transform.dlq.arn,
        alarmTopicArn: observability.topic.arn,
        dashboardName: observability.dashboard.dashboardName,
        hmacSecretName: storage.hmacSecret.name,
        hmacSecretArn: storage.hmacSecret.arn,
        glueDatabaseName: catalog.database.name,
        glueTableName: catalog.table.name,
        vpcId: network?.vpc.id,
        trailName: audit?.trail.name,
        producerRoleArn: access.producer.arn,
        operatorRoleArn: access.operator.arn,
    };
}

/** The program: the stack name picks the environment file, the manifest the artifacts. */
export async function run(options: LoadOptions = {}): Promise<PipelineOutputs> {
    const env = loadEnvironment(pulumi.getStack(), options);
    const artifacts = artifactsFromEnv();
    return createPipeline({ env, artifacts, gitSha: gitShaFromEnv() });
}
