#!/usr/bin/env python3
"""Evaluates an identity policy on authorization requests, offline, with the emulator's IAM
evaluator (``deploy/sandbox/iam_eval.py``).

usage: evaluate.py POLICY.json CASES.json

CASES is ``{"variables": {"${aws:userid}": "AROA…:carol", …}, "cases": [{"name": …,
"action": "ssm:StartSession", "resource": ARN, "context": {key: [values]}}, …]}``. The
policy's variables are replaced by the given values first (the evaluator refuses unresolved
ones, as IAM resolves them per caller). Prints one JSON line per case: name, outcome
(allow, explicit-deny, implicit-deny) and the deciding statement.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sandbox"))
import iam_eval  # noqa: E402


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    text = open(argv[1]).read()
    spec = json.load(open(argv[2]))
    for variable, value in spec.get("variables", {}).items():
        text = text.replace(variable, value)
    policy = json.loads(text)
    iam_eval.validate(policy)
    for case in spec["cases"]:
        request = iam_eval.Request(case["action"], case["resource"], case.get("context", {}))
        decision = iam_eval.evaluate(policy, request)
        print(json.dumps({"name": case["name"], "outcome": decision.outcome, "statement": decision.statement}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
