// Entry point of the Pulumi program. The stack name picks the environment file (`dev` → dev.toml,
// `pr-<n>` → preview.toml), `PIPELINE_ARTIFACT_MANIFEST` names the artifacts to deploy and
// `GIT_SHA` tags every resource. Nothing is configured in Pulumi.<stack>.yaml.

import { run } from "./src/pipeline";

// Pulumi calls the exported function and publishes what it resolves to as the stack outputs.
export = async () => run();
