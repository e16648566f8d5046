// The facts of each environment class, read from the repository's environment files: the project
// name, the region and what the class's network section turns on. The bootstrap program and its
// tests read them here, so the documents follow environments/*.toml.

import { loadEnvironment, type LoadOptions } from "../src/config";
import { DEPLOYED_CLASSES, type DeployedClass } from "../src/boundary";
import type { BootstrapFacts } from "./policies";

/** The stack whose environment file describes a class: every `pr-<n>` stack reads `preview.toml`. */
export const REPRESENTATIVE_STACK: Record<DeployedClass, string> = { dev: "dev", prod: "prod", preview: "pr-1" };

export interface AccountFacts {
    accountId: string;
    partition: string;
    /** `owner/name` of the GitHub repository. */
    repository: string;
}

export function factsFor(envClass: DeployedClass, account: AccountFacts, options: LoadOptions = {}): BootstrapFacts {
    const env = loadEnvironment(REPRESENTATIVE_STACK[envClass], options);
    return {
        project: env.project,
        envClass,
        accountId: account.accountId,
        region: env.region,
        partition: account.partition,
        repository: account.repository,
        network: { vpc: env.network.vpc, cloudtrail: env.network.cloudtrail },
    };
}

/**
 * The project and region of every class. One bootstrap stack serves one account and one region, so
 * every class's environment file must name the same project and region.
 */
export function projectAndRegion(options: LoadOptions = {}): { project: string; region: string } {
    const envs = DEPLOYED_CLASSES.map((c) => loadEnvironment(REPRESENTATIVE_STACK[c], options));
    const projects = new Set(envs.map((e) => e.project));
    const regions = new Set(envs.map((e) => e.region));
    if (projects.size !== 1 || regions.size !== 1) {
        throw new Error(
            `the environment files of ${DEPLOYED_CLASSES.join(", ")} name projects ${[...projects].join(", ")} and regions ` +
                `${[...regions].join(", ")}: one bootstrap stack serves one project in one region`,
        );
    }
    return { project: envs[0]?.project as string, region: envs[0]?.region as string };
}

/** The facts of every class. */
export function allFacts(account: AccountFacts, options: LoadOptions = {}): Record<DeployedClass, BootstrapFacts> {
    projectAndRegion(options);
    return Object.fromEntries(DEPLOYED_CLASSES.map((c) => [c, factsFor(c, account, options)])) as Record<DeployedClass, BootstrapFacts>;
}
