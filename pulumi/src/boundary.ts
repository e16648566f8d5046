// Environment classes and the permissions boundary every role of the pipeline carries.
//
// The bootstrap program (pulumi/bootstrap) creates one boundary policy per environment class and the
// deployer role of that class may create a role only when it carries that boundary. This module is
// the one definition of the class of an environment and of the boundary's name, for the pipeline
// program (every `aws.iam.Role` sets `permissionsBoundary: permissionsBoundaryArn(...)`) and for the
// bootstrap program alike.

import { isPreview, type Environment } from "./config";
import { namePrefix } from "./names";

/** The environment classes that have a deployer role, a state prefix and a boundary in AWS. */
export const DEPLOYED_CLASSES = ["dev", "prod", "preview"] as const;
export type DeployedClass = (typeof DEPLOYED_CLASSES)[number];

/**
 * Every environment belongs to one class: `dev`, `prod`, every `pr-<n>` to `preview`. `local` is its
 * own class: it exists only in the local emulator, which has no bootstrap stack, but the program
 * still names a boundary for it so that its documents have the shape of the deployed ones.
 */
export type EnvironmentClass = DeployedClass | "local";

export function environmentClass(envName: string): EnvironmentClass {
    if (envName === "dev" || envName === "prod" || envName === "local") {
        return envName;
    }
    if (isPreview(envName)) {
        return "preview";
    }
    throw new Error(`environment \`${envName}\` belongs to no environment class: use \`local\`, \`dev\`, \`prod\` or \`pr-<number>\``);
}

/**
 * The environment names of a class as an IAM wildcard: `dev`, `prod`, `pr-*`. With `namePrefix()`
 * it gives the names of every resource of the class (`eventpipe-pr-*-events`, ...).
 */
export function environmentNamePattern(envClass: EnvironmentClass): string {
    return envClass === "preview" ? "pr-*" : envClass;
}

/** `<project>-<class>-boundary`: the managed policy that bounds every role of the class. */
export function permissionsBoundaryName(project: string, envClass: EnvironmentClass): string {
    return `${project}-${envClass}-boundary`;
}

/**
 * The ARN of the permissions boundary that every role of `env` must carry. The policy is created by
 * the bootstrap stack of the account, not by the pipeline program, so the deployer cannot edit it.
 */
export function permissionsBoundaryArn(env: Pick<Environment, "project" | "name">, accountId: string, partition: string): string {
    return classBoundaryArn(env.project, environmentClass(env.name), accountId, partition);
}

/** The ARN of a class's permissions boundary. */
export function classBoundaryArn(project: string, envClass: EnvironmentClass, accountId: string, partition: string): string {
    return `arn:${partition}:iam::${accountId}:policy/${permissionsBoundaryName(project, envClass)}`;
}

/** `<project>-<class pattern>`: the first components of every name in a class (`eventpipe-pr-*`). */
export function classNamePrefix(project: string, envClass: EnvironmentClass): string {
    return namePrefix({ project, name: environmentNamePattern(envClass) });
}
