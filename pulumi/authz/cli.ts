// The authorisation tools, run by `cargo xtask authz` and `cargo xtask test`:
//
//   cli.ts render [--check]                  write (or check) authz/local/<env>.json
//   cli.ts requests --from <jsonl> [--check | --exact]
//                                            check that authz/recorded-requests.json holds every request of
//                                            a recording, add them to it, or (--exact) write just them
//   cli.ts gate --env dev|prod|preview       the offline gate: table, denials, unused grants

import * as fs from "node:fs";

import { loadEnvironment } from "../src/config";
import { gate, passes, report } from "./gate";
import { localTarget, POLICY_ENVIRONMENTS, renderModel, writeLocalModels, type PolicyEnvironment } from "./render";
import { compareRecord, loadRequests, normalise, REQUESTS_PATH, serialiseRequests, type RecordedRequest } from "./requests";

/** The account the gate renders environments in: any account gives the same decisions. */
export const GATE_ACCOUNT_ID = "123456789012";

function flag(args: string[], name: string): string | undefined {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
}

export async function gateFor(environment: PolicyEnvironment) {
    const stack = POLICY_ENVIRONMENTS[environment];
    const model = await renderModel(environment, { stack, accountId: GATE_ACCOUNT_ID, region: loadEnvironment(stack).region, placeholders: false });
    return { model, result: await gate(model, loadRequests()) };
}

/** What the local emulator recorded (JSON lines), in the committed form. */
export async function recordedRequests(file: string): Promise<RecordedRequest[]> {
    const model = await renderModel("dev", localTarget());
    const local = {
        project: "eventpipe",
        stack: model.stack,
        accountId: model.accountId,
        region: model.region,
        partition: model.partition,
        kmsKeyId: "\u0000no key id is recorded\u0000",
        secretSuffix: "",
    };
    const byRole = new Map(model.principals.map((p) => [p.roleName, p.id]));
    const out: RecordedRequest[] = [];
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
        if (line.trim() === "") {
            continue;
        }
        const r = normalise(JSON.parse(line), local, (role) => byRole.get(role));
        if (r) {
            out.push(r);
        }
    }
    return out;
}

async function main(argv: string[]): Promise<number> {
    const [command, ...rest] = argv;
    switch (command) {
        case "render": {
            const check = rest.includes("--check");
            const stale = await writeLocalModels(check);
            for (const file of stale) {
                console.error(`${check ? "stale" : "wrote"} ${file}`);
            }
            if (check && stale.length > 0) {
                console.error("the program's policies changed: run `npm run authz:render` in pulumi/ and commit authz/local/");
                return 1;
            }
            return 0;
        }
        case "requests": {
            const from = flag(rest, "--from");
            if (!from) {
                console.error("usage: cli.ts requests --from <recorded.jsonl> [--check | --exact]");
                return 2;
            }
            const run = await recordedRequests(from);
            const record = fs.existsSync(REQUESTS_PATH) ? loadRequests(REQUESTS_PATH) : [];
            const { missing, unseen } = compareRecord(run, record);
            const line = (r: RecordedRequest) => `  ${r.principal} ${r.action} ${r.resource} ${JSON.stringify(r.context)} (${r.emulator})`;
            if (rest.includes("--check")) {
                if (unseen.length > 0) {
                    console.error(`${unseen.length} recorded request(s) this run did not make (timing decides some paths; EVENTPIPE_AUTHZ_REFRESH=exact drops them):`);
                    unseen.forEach((r) => console.error(line(r)));
                }
                if (missing.length === 0) {
                    return 0;
                }
                console.error(
                    `${REQUESTS_PATH} is stale: the end-to-end run made ${missing.length} request(s) it does not record, which the gate has not evaluated:`,
                );
                missing.forEach((r) => console.error(line(r)));
                console.error("Refresh it with `EVENTPIPE_AUTHZ_REFRESH=1 cargo xtask test`, review the diff, commit.");
                return 1;
            }
            const exact = rest.includes("--exact");
            const text = serialiseRequests(exact ? run : [...record, ...run]);
            const current = fs.existsSync(REQUESTS_PATH) ? fs.readFileSync(REQUESTS_PATH, "utf8") : "";
            if (text !== current) {
                fs.writeFileSync(REQUESTS_PATH, text);
                console.error(`wrote ${REQUESTS_PATH}: ${missing.length} request(s) added${exact ? `, ${unseen.length} dropped` : ""}`);
            }
            return 0;
        }
        case "gate": {
            const env = (flag(rest, "--env") ?? "dev") as PolicyEnvironment;
            if (!(env in POLICY_ENVIRONMENTS)) {
                console.error(`unknown environment ${env}: use dev, prod or preview`);
                return 2;
            }
            const { model, result } = await gateFor(env);
            console.log(report(model, result));
            return passes(result) ? 0 : 1;
        }
        default:
            console.error("usage: cli.ts render [--check] | requests --from <jsonl> [--check] | gate --env <env>");
            return 2;
    }
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => process.exit(code),
        (err: unknown) => {
            console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
            process.exit(1);
        },
    );
}
