// Entry point of the bootstrap program: the state backend and the GitHub Actions roles of one AWS
// account (docs/bootstrap.md). Configuration: `eventpipe-bootstrap:repository` (`owner/name`) and,
// in an account that already has GitHub's OIDC provider, `eventpipe-bootstrap:adoptOidcProvider`.

import { runBootstrap } from "./program";

// Pulumi calls the exported function and publishes what it resolves to as the stack outputs.
export = async () => runBootstrap();
