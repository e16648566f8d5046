"""Starts the pinned ministack (see .ci/requirements-local.txt) for the local stack.

Two additions, both outside ministack's own code:

- With TLS on (`USE_SSL=1`), ministack also listens on port 443 when it may. The local stack
  serves on the one free loopback port it chose, never on a fixed one.
- With `EVENTPIPE_AUTHZ_RECORD=<file>`, every authorisation decision ministack makes under
  `AUTH=true` is appended to <file> as one JSON line: the calling principal, the IAM action, the
  resource ARN, the request's condition keys and the decision. The end-to-end tests keep these as
  the record of what the pipeline asks AWS for; `cargo xtask authz` checks them offline against the
  rendered policies. Calls made with the account's root credentials (provisioning, the mapping's
  invocations, test fixtures) are left out.
"""

import json
import os
import sys
import threading

from ministack import app
from ministack.core import iam_evaluator

_bindable = app._port_is_bindable


def _not_443(host, port):
    return False if int(port) == 443 else _bindable(host, port)


app._port_is_bindable = _not_443

_record = os.environ.get("EVENTPIPE_AUTHZ_RECORD")
if _record:
    _lock = threading.Lock()
    _out = open(_record, "a", buffering=1, encoding="utf-8")
    _enforce = iam_evaluator.enforce

    def _decision(result):
        if result is None:
            return "Allow"
        if isinstance(result, iam_evaluator.AuthError):
            return f"AuthError:{result.code}"
        return result.decision

    def _jsonable(value):
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, (list, tuple, set)):
            return [_jsonable(v) for v in value]
        return str(value)

    def enforce(access_key_id, iam_action, service, region, resource_arn="*", service_context=None):
        result = _enforce(access_key_id, iam_action, service, region, resource_arn=resource_arn,
                          service_context=service_context)
        try:
            identity = iam_evaluator.resolve_caller_identity(access_key_id or "") or {}
            principal = identity.get("userArn", "")
            if principal and not principal.endswith(":root"):
                line = json.dumps({
                    "principal": principal,
                    "action": iam_action,
                    "resource": resource_arn,
                    "context": {k: _jsonable(v) for k, v in sorted((service_context or {}).items()) if v is not None},
                    "decision": _decision(result),
                }, sort_keys=True)
                with _lock:
                    _out.write(line + "\n")
        except Exception as e:  # the record must never change a decision
            print(f"authz record: {e}", file=sys.stderr)
        return result

    iam_evaluator.enforce = enforce

if __name__ == "__main__":
    sys.exit(app.main())
