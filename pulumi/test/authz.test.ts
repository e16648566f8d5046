// The authorisation model: the committed renderings the local emulator enforces are exactly what
// the program generates now.

import { strict as assert } from "node:assert";

import { localTarget, renderModel, writeLocalModels } from "../authz/render";

describe("authorisation model", () => {
    it("the committed renderings for the local emulator are the program's (`cargo xtask authz --render`)", async () => {
        const stale = await writeLocalModels(true);
        assert.deepEqual(stale, [], "the program's policies changed: run `npm run authz:render` in pulumi/ and commit authz/local/");
    });

    it("names every identity statement, so that the gate can say which one allows a request", async () => {
        const model = await renderModel("prod", localTarget());
        const unnamed = model.principals.flatMap((p) =>
            p.policies.flatMap((policy) => policy.document.Statement.filter((s) => !s.Sid).map(() => `${p.id}/${policy.name}`)),
        );
        assert.deepEqual(unnamed, []);
    });

    it("renders the roles of both functions and both tools, with the platform's requests", async () => {
        const model = await renderModel("dev", localTarget());
        assert.deepEqual(model.principals.map((p) => `${p.id}:${p.kind}`).sort(), ["operator:tool", "producer:tool", "stream-processor:function", "transformer:function"]);
        const esm = model.platform.filter((r) => r.principal === "stream-processor" && r.action === "sqs:SendMessage");
        assert.deepEqual(esm.map((r) => r.resource), ["arn:aws:sqs:us-east-1:000000000000:eventpipe-local-stream-dlq"]);
    });
});
