#!/usr/bin/env python3
"""IAM lint: runs parliament on every IAM policy document of fargate-connect's Terraform.

Inputs (any number, "-" for stdin):
  * a policy document (a JSON object with a "Statement"), named by its path (a trust policy
    when every statement names a Principal);
  * `terraform show -json` output, of a state or of a saved plan. From it the lint takes every
    `aws_iam_policy_document` data source's `json`, `aws_iam_policy.policy`,
    `aws_iam_role_policy.policy` and `aws_iam_role.assume_role_policy`, in every module, and
    names each document by its Terraform address.

Run it on the STATE after an apply (against the emulator, or a real account): in a plan, every
document that mentions an ARN of a resource not yet created (the boundary's, the bastion group's)
is unknown until apply, and the lint can only report it as unknown, which fails the run unless
--allow-unknown is given. Identical documents (a data source and the role policy made from it)
are linted once, under all their names.

Each finding is printed with its document. The run fails (exit 1) on any finding at
--fail-on (default MEDIUM) or above that the exceptions file does not cover, on an exception
that matched nothing in a document it names (stale), and on unknown documents. Exit 2 is a
usage or input error.

Exceptions (default: parliament-exceptions.yml beside this file) are a YAML list of
  - document: a document name, or a glob (fnmatch) over names
    issue: a parliament issue code, e.g. RESOURCE_MISMATCH
    why: one line: why this finding is acceptable here
    match: optional; a substring the finding's detail must contain (to pin one action)

Trust policies (aws_iam_role.assume_role_policy) have no Resource by design; parliament, a
linter of identity policies, reports that as MALFORMED, and the lint drops exactly that one
finding for them. Everything else parliament says about them stands.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from dataclasses import dataclass, field

import yaml

import parliament
from parliament import analyze_policy_string, enhance_finding, override_config

SEVERITIES = ["MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]

# (mode, type) -> the attribute holding a policy document, and whether it is a trust policy.
TERRAFORM_DOCUMENTS = {
    ("data", "aws_iam_policy_document"): ("json", False),
    ("managed", "aws_iam_policy"): ("policy", False),
    ("managed", "aws_iam_role_policy"): ("policy", False),
    ("managed", "aws_iam_role"): ("assume_role_policy", True),
}

TRUST_POLICY_NO_RESOURCE = "Statement contains neither Resource nor NotResource"


def die(message: str):
    print(f"lint: {message}", file=sys.stderr)
    sys.exit(2)


@dataclass
class Document:
    text: str
    names: list[str] = field(default_factory=list)
    trust: bool = False

    @property
    def name(self) -> str:
        return self.names[0] + (f" (= {', '.join(self.names[1:])})" if len(self.names) > 1 else "")


@dataclass
class Accepted:
    document: str
    issue: str
    why: str
    match: str | None = None
    used: bool = False

    def covers(self, doc: Document, finding) -> bool:
        if finding.issue != self.issue:
            return False
        if not any(fnmatch.fnmatchcase(n, self.document) for n in doc.names):
            return False
        return self.match is None or self.match in describe(finding)


def walk_modules(module: dict):
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from walk_modules(child)


def unknown_addresses(show: dict) -> set[str]:
    """Addresses whose policy attribute a plan knows only after apply."""
    unknown = set()
    for change in show.get("resource_changes", []):
        key = (change.get("mode"), change.get("type"))
        if key not in TERRAFORM_DOCUMENTS:
            continue
        attr, _ = TERRAFORM_DOCUMENTS[key]
        after = change.get("change", {})
        if "delete" in after.get("actions", []) and after.get("after") is None:
            continue
        if (after.get("after_unknown") or {}).get(attr) is True:
            unknown.add(change["address"])
    return unknown


def documents_from_terraform(show: dict, source: str) -> tuple[list[Document], list[str]]:
    resources: dict[str, dict] = {}
    # A state has "values"; a plan has "planned_values" plus, for data sources read while
    # planning, "prior_state".
    for root in (
        show.get("prior_state", {}).get("values", {}).get("root_module"),
        show.get("planned_values", {}).get("root_module"),
        show.get("values", {}).get("root_module"),
    ):
        if root:
            for r in walk_modules(root):
                resources[r["address"]] = r
    unknown = unknown_addresses(show)
    docs: list[Document] = []
    missing: list[str] = []
    for address in sorted(resources):
        r = resources[address]
        key = (r.get("mode"), r.get("type"))
        if key not in TERRAFORM_DOCUMENTS:
            continue
        attr, trust = TERRAFORM_DOCUMENTS[key]
        text = (r.get("values") or {}).get(attr)
        if address in unknown or not text:
            missing.append(address)
            continue
        docs.append(Document(text=text, names=[address], trust=trust))
    for address in sorted(unknown - set(resources)):
        missing.append(address)
    if not docs and not missing:
        print(f"{source}: no IAM policy documents found", file=sys.stderr)
    return docs, missing


def load_inputs(paths: list[str]) -> tuple[list[Document], list[str]]:
    docs: list[Document] = []
    missing: list[str] = []
    for path in paths:
        try:
            raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
            data = json.loads(raw)
        except (OSError, json.JSONDecodeError) as e:
            die(f"cannot read {path}: {e}")
        if isinstance(data, dict) and "Statement" in data:
            statements = data["Statement"] if isinstance(data["Statement"], list) else [data["Statement"]]
            # A document whose every statement names a Principal is a trust (resource) policy.
            trust = bool(statements) and all(isinstance(st, dict) and "Principal" in st for st in statements)
            docs.append(Document(text=raw, names=[path], trust=trust))
        elif isinstance(data, dict) and ("format_version" in data or "values" in data or "planned_values" in data):
            found, unknown = documents_from_terraform(data, path)
            docs.extend(found)
            missing.extend(unknown)
        else:
            die(f"{path} is neither a policy document nor `terraform show -json` output")
    # The same document under several names is linted once.
    merged: dict[str, Document] = {}
    for d in docs:
        key = json.dumps(json.loads(d.text), sort_keys=True)
        if key in merged:
            merged[key].names.extend(d.names)
            merged[key].trust = merged[key].trust or d.trust
        else:
            merged[key] = Document(text=d.text, names=list(d.names), trust=d.trust)
    return list(merged.values()), missing


def load_exceptions(path: str | None) -> list[Accepted]:
    if not path:
        return []
    if not os.path.exists(path):
        die(f"no exceptions file at {path}")
    with open(path, encoding="utf-8") as f:
        entries = yaml.safe_load(f) or []
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"document", "issue", "why"} <= set(e) or not str(e["why"]).strip():
            die(f"{path}: entry {i + 1} needs document, issue and a non-empty why")
        out.append(Accepted(document=e["document"], issue=e["issue"], why=str(e["why"]).strip(), match=e.get("match")))
    return out


def describe(finding) -> str:
    """The finding's detail, or (community auditors put it there) its location's content."""
    if finding.detail:
        return str(finding.detail)
    where = {k: v for k, v in (finding.location or {}).items() if k not in ("filepath", "line", "column", "lineno")}
    return json.dumps(where, sort_keys=True) if where else finding.title


def analyze(doc: Document, community: bool) -> list:
    policy = analyze_policy_string(doc.text, filepath=doc.names[0], include_community_auditors=community)
    findings, seen = [], set()
    for f in policy.findings:
        f = enhance_finding(f)
        if doc.trust and f.issue == "MALFORMED" and f.detail == TRUST_POLICY_NO_RESOURCE:
            continue
        key = (f.issue, str(f.detail), json.dumps(f.location, sort_keys=True, default=str))
        if key not in seen:  # parliament reports some findings twice
            seen.add(key)
            findings.append(f)
    return findings


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="policy JSON files or `terraform show -json` output (- = stdin)")
    parser.add_argument("--exceptions", default=os.path.join(here, "parliament-exceptions.yml"))
    parser.add_argument("--no-exceptions", action="store_true", help="ignore the exceptions file")
    parser.add_argument("--fail-on", default="MEDIUM", choices=SEVERITIES[2:], help="lowest failing severity")
    parser.add_argument("--no-community", action="store_true", help="skip parliament's community auditors")
    parser.add_argument("--allow-unknown", action="store_true", help="do not fail on documents a plan cannot render")
    args = parser.parse_args(argv)

    community = not args.no_community
    if community:
        override_config(os.path.join(os.path.dirname(parliament.__file__), "community_auditors", "config_override.yaml"))
    docs, missing = load_inputs(args.inputs)
    exceptions = [] if args.no_exceptions else load_exceptions(args.exceptions)
    threshold = SEVERITIES.index(args.fail_on)

    failures = 0
    for doc in docs:
        findings = analyze(doc, community)
        print(f"== {doc.name}{' [trust policy]' if doc.trust else ''}: {len(findings)} finding(s)")
        for f in sorted(findings, key=lambda f: -SEVERITIES.index(f.severity)):
            excused = next((e for e in exceptions if e.covers(doc, f)), None)
            if excused:
                excused.used = True
                verdict = f"excepted: {excused.why}"
            elif SEVERITIES.index(f.severity) >= threshold:
                verdict = "FAIL"
                failures += 1
            else:
                verdict = "below --fail-on"
            print(f"  {f.severity:<8} {f.issue}: {describe(f)}  [{verdict}]")
    for address in missing:
        print(f"== {address}: UNKNOWN (its value is known only after apply: lint the state)")
        if not args.allow_unknown:
            failures += 1
    names = [n for d in docs for n in d.names]
    for e in exceptions:
        if not e.used and any(fnmatch.fnmatchcase(n, e.document) for n in names):
            print(f"stale exception (matched nothing): {e.document} {e.issue}{f' ({e.match})' if e.match else ''}")
            failures += 1
    print(f"{len(docs)} document(s), {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
