"""A thin WSGI layer in front of the moto server (the AWS emulator used by tests and the sandbox).

moto 5.2.5 lacks a few things fargate-connect relies on. This layer fills exactly those gaps from
moto's own state, shaped after the AWS API reference, and forwards everything else untouched:

* SSM ``DescribeInstanceInformation``: a running EC2 instance with an instance profile counts as
  registered with SSM (``PingStatus: Online``) once ``--ssm-registration-delay`` seconds have
  passed since its launch. That is what the real SSM agent does on an AL2023 AMI.
* SSM ``DescribeSessions`` / ``TerminateSession``: moto has no sessions. The layer keeps the
  sessions a test plants (``POST /_front/sessions``; nobody can start a real one here): the
  Active ones are listed, filtered by ``Target`` and ``Owner`` as Session Manager filters them,
  and terminating one ends it.
* ECS ``enableExecuteCommand``: moto does not store it. The layer remembers it from
  ``CreateService`` / ``UpdateService`` / ``RunTask`` requests and puts it back into
  ``DescribeServices`` / ``DescribeTasks`` answers, together with the ``ExecuteCommandAgent``
  managed agent (RUNNING) on every container of such a task, as real ECS reports it.
* ECS ``availabilityZoneRebalancing``: moto neither stores nor returns it. The layer remembers
  it the same way and answers it in ``DescribeServices`` (``ENABLED``, ECS's default for a new
  service, when it was not given), so Terraform sees no drift.
* ECS ``DescribeTasks`` lists only a task's first container: the layer lists every container of
  the task definition (moto's own), each with the task's status.
* EC2 ``RunInstances`` ignores ``ClientToken``: the layer answers a repeated token (same
  account) with the first answer, as EC2 does, and a repeated token whose other parameters
  differ with ``IdempotentParameterMismatch`` (400), as EC2 does.
* EC2 ``DescribeInstances`` leaves an instance's own ``groupSet`` empty when it was launched
  into a subnet with ``SecurityGroupId``s (the groups are only on its network interface); the
  layer copies the primary interface's groups up, as EC2 reports them (Terraform reads them
  there).
* Accounts: moto takes the account from an ``x-moto-account-id`` header, which clients that
  cannot add headers (Terraform) do not send. An access key id ``ACCT<12 digits>`` names the
  account instead (the layer sets the header from it).
* EC2 ``RunInstances`` naming an instance profile that does not exist answers moto's IAM
  ``NoSuchEntity`` (404, IAM's shape); the layer answers what EC2 does: 400
  ``InvalidParameterValue``, ``Value (NAME) for parameter iamInstanceProfile.name is invalid.
  Invalid IAM Instance Profile name`` (for ``IamInstanceProfile.Arn``: ``Value (ARN) for parameter
  iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN``).
* SSM Run Command: moto runs every command at once and always successfully, accepts instances
  that are not managed nodes, fails ``Targets`` with ``Key=InstanceIds`` (500) and has no
  ``ListCommandInvocations``. The layer answers these as Run Command does:

  - ``SendCommand`` with ``InstanceIds`` naming an instance that is not a managed node (not
    ``Online`` in ``DescribeInstanceInformation`` as above, e.g. not running) answers 400
    ``InvalidInstanceId``, ``Instances [[i-…]] not in a valid state for account ID``. With
    ``Targets`` (``InstanceIds``, ``tag:KEY``, ``tag-key``) the targets are resolved to managed
    nodes instead, and those that are not simply get no invocation. The answer's ``Command``
    is ``Pending`` with all counts 0, as SSM answers it.
  - Each invocation does not exist for ``invocation_lag_secs`` after ``SendCommand``
    (``GetCommandInvocation`` answers 400 ``InvocationDoesNotExist``, with no message, and
    ``ListCommandInvocations`` leaves it out), then is ``InProgress`` (``ResponseCode`` -1) for
    ``command_run_secs``, then final. The final status is fixed when the command starts.
  - The readiness probe: a command (``Parameters.commands``) naming the marker path
    ``/var/lib/fargate-connect/ready`` ends ``Success`` (``ResponseCode`` 0) only if, when it
    starts, the instance is usable: its user data (``UserData`` of ``RunInstances``, base64,
    optionally gzipped) has a line, not a comment, with both ``touch`` and the marker path,
    and ``cloud_init_secs`` have passed since its launch. Otherwise it ends ``Failed`` with
    ``ResponseCode`` 1 and ``StandardErrorContent`` ``not ready``.
  - Any other command ends ``Success`` (``ResponseCode`` 0, empty output) unless a failure
    was injected (below).
  - ``ListCommandInvocations`` takes ``CommandId``, ``InstanceId`` and ``Details`` (no
    ``Filters``, no paging). ``ListCommands`` stays moto's (every command ``Success`` at once).

And it shows AWS's documented eventual consistency, on by default, each window per account
(``POST /_front/consistency``) with process-wide defaults from the command line:

* EC2 (``instance_not_found_secs``, default 1.0): for that long after ``RunInstances`` returned
  an instance, ``DescribeInstances`` naming it (``InstanceId.N``) answers 400
  ``InvalidInstanceID.NotFound``, ``The instance ID 'i-…' does not exist`` (``The instance IDs
  'i-…, i-…' do not exist`` for several), and one by filters leaves it out. ``TerminateInstances``
  naming it answers the same error and does not terminate it. ("Eventual consistency in the
  Amazon EC2 API".)
* IAM (``profile_propagation_secs``, default 1.0): for that long after a successful
  ``CreateInstanceProfile`` or ``AddRoleToInstanceProfile``, ``RunInstances`` naming that
  profile (by name or ARN) answers the invalid-profile error above.

And it lets tests shape failures, which moto cannot do:

* ``POST /_front/faults`` with ``{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
  "message": "...", "status": 500, "times": 2, "account": "123456789012", "delay": 0.0,
  "match": "t3.micro"}`` answers the next ``times`` matching calls with an AWS-shaped error:
  EC2 ``<Response><Errors><Error><Code>…``; IAM and the other query protocols
  ``<ErrorResponse><Error><Type>Sender</Type><Code>…`` (``Receiver`` for a status of 500 and
  up); the JSON protocols (SSM, ECS) ``{"__type": CODE, "message": …}`` with the
  ``x-amzn-ErrorType`` header. ``status`` defaults to 500 for the server-side codes
  (``ServiceFailure``, ``InternalServerError``, ``InternalFailure``, ``InternalError``), 503 for
  ``ServiceUnavailable`` / ``Unavailable``, else 400. ``"after": true`` lets the call take
  effect first and loses only its answer (a launch whose answer never arrived). ``delay``
  (seconds) holds the answer
  first; ``code`` may be omitted to only delay, and with ``"after": true`` (and no ``code``)
  the call takes effect at once and only its answer is held. ``match`` (optional) must occur in the raw
  request body. ``DELETE /_front/faults`` clears them.
* ``POST /_front/consistency`` ``{"account": ID, "instance_not_found_secs": 0,
  "profile_propagation_secs": 0, "invocation_lag_secs": 0, "command_run_secs": 0,
  "cloud_init_secs": 0}`` (any subset) sets that account's windows; each applies to what
  happens after it is set (a launch keeps the windows it was launched with).
  ``GET /_front/consistency?account=ID`` returns the account's windows.
* ``POST /_front/commands`` ``{"account": ID, "match": "shutdown", "status": "Failed",
  "times": 1, "response_code": 1, "stderr": "...", "stdout": ""}`` makes the next ``times``
  ``SendCommand`` calls whose commands contain ``match`` end with that status (``Failed``,
  ``TimedOut`` or ``Cancelled``; ``response_code`` defaults to 1 for ``Failed``, else -1) on
  every instance. ``DELETE /_front/commands`` clears them.
* ``GET /_front/usable?account=ID`` returns ``{instance_id: epoch seconds}``: when each instance
  whose user data creates the readiness marker is usable (its launch plus ``cloud_init_secs``),
  so a test can check that nothing called it ready earlier.
* ``POST /_front/ssm`` ``{"account": ID, "online": false}`` keeps that account's instances from
  registering with SSM (an agent that never comes up); ``true`` restores it.
* ``POST /_front/ecs-agent`` ``{"account": ID, "task_arn": ARN, "status": "STOPPED"}`` reports that
  task's ExecuteCommandAgent with that status.
* ``POST /_front/sessions`` ``{"account": ID, "target": "i-…" or "ecs:<cluster>_<task>_<runtime>",
  "owner": ARN}`` plants an active Session Manager session; ``GET /_front/sessions?account=ID``
  lists them with their status.
* ``GET /_front/calls?account=ID`` returns every AWS call seen for that account, in order, as
  ``[{"service": "ec2", "action": "RunInstances", "at": 1700000000.0, "took": 0.012, "status": 200}, ...]``
  (EC2 calls naming instances also carry ``"instances": [...]``; calls checked against an
  enforced policy carry ``"principal"``, and those it refused ``"denied": "ec2:RunInstances on
  arn:…"``); tests and the benchmarks count and time AWS calls there, not in our own code.

And it holds a principal to its IAM policy, which moto ignores:

* ``POST /_front/iam`` ``{"account": ID, "policy": {…identity policy document…}, "principal":
  "fargate-connect-bot", "access_key_id": "AKID…", "missing_iam_entities": "not-found"}`` makes
  every later call of that account signed with that access key id (every call of the account
  when ``access_key_id`` is left out) pass the policy first, as AWS authorizes it: the front
  derives the authorization requests AWS evaluates for the call, ``(action, resource ARN,
  condition context)`` after the Service Authorization Reference, from the request and moto's
  state (``iam_calls.py`` holds that table), and evaluates each against the policy
  (``iam_eval.py``: Allow/Deny, wildcards, the condition operators). DryRun calls are checked
  too (allowed, moto answers ``DryRunOperation``). The first request not allowed refuses the
  call, naming action and resource: EC2 ``UnauthorizedOperation`` (403), ``You are not
  authorized to perform this operation. User: ARN is not authorized to perform:
  ec2:RunInstances on resource: arn:… because no identity-based policy allows the
  ec2:RunInstances action`` (``with an explicit deny in an identity-based policy`` for a Deny;
  for a spot launch that would have to create ``AWSServiceRoleForEC2Spot``:
  ``AuthFailure.ServiceLinkedRoleCreationNotPermitted``); IAM ``AccessDenied`` (403, ``<Type>
  Sender</Type>``); ECS and SSM ``AccessDeniedException`` (400). ``principal`` names the role
  in the message (``arn:aws:sts::ID:assumed-role/NAME/fargate-connect``; a full ARN is used as
  given). ``GetCallerIdentity`` needs no permission. IAM calls naming a role or instance
  profile that does not exist have no path to authorize against: with ``missing_iam_entities``
  ``not-found`` (the default) moto answers ``NoSuchEntity``, with ``default-path`` they are
  authorized as if under ``/``. ``DELETE /_front/iam?account=ID`` lifts it; ``GET
  /_front/iam?account=ID`` returns it. The first successful spot ``RunInstances`` of an account
  creates ``AWSServiceRoleForEC2Spot`` in moto's IAM, as EC2 does.

Run: ``python moto_front.py [--port 0] [--ssm-registration-delay 0] [--instance-not-found-secs 1]
[--profile-propagation-secs 1] [--invocation-lag-secs 0.3] [--command-run-secs 0.2]
[--cloud-init-secs 1.5]`` (each defaults to its ``MOTO_FRONT_…`` environment variable, e.g.
``MOTO_FRONT_CLOUD_INIT_SECS``, when set). It prints
``LISTENING <port>`` once it accepts connections and exits when its standard input closes, so a
parent that dies never leaves it behind.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import io
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from xml.sax.saxutils import escape

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iam_calls  # noqa: E402
import iam_eval  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

DEFAULT_ACCOUNT = "123456789012"
JSON_SERVICES = {"AmazonSSM": "ssm", "AmazonEC2ContainerServiceV20141113": "ecs"}
# The eventual-consistency and readiness windows (seconds), with their defaults.
CONSISTENCY = {
    "instance_not_found_secs": 1.0,
    "profile_propagation_secs": 1.0,
    "invocation_lag_secs": 0.3,
    "command_run_secs": 0.2,
    "cloud_init_secs": 1.5,
}
READY_MARKER = "/var/lib/fargate-connect/ready"
RUN_SHELL_PLUGIN = "aws:runShellScript"
SERVER_ERROR_STATUS = {"ServiceFailure": 500, "InternalServerError": 500, "InternalFailure": 500,
                       "InternalError": 500, "ServiceUnavailable": 503, "Unavailable": 503}
COMMAND_FAULT_DETAILS = {"Failed": "Failed", "TimedOut": "ExecutionTimedOut", "Cancelled": "Cancelled"}


class Front:
    def __init__(self, app, ssm_registration_delay: float, consistency: dict | None = None):
        self.app = app
        self.ssm_delay = ssm_registration_delay
        self.lock = threading.Lock()
        self.faults: list[dict] = []
        self.calls: dict[str, list[dict]] = {}
        # (account, service ARN or "cluster/name") -> bool; task ARN -> bool
        self.exec_services: dict[tuple[str, str], bool] = {}
        self.az_rebalancing: dict[tuple[str, str], str] = {}
        self.exec_tasks: dict[tuple[str, str], bool] = {}
        self.ssm_offline: set[str] = set()
        self.agent_status: dict[tuple[str, str], str] = {}
        # account -> planted Session Manager sessions
        self.sessions: dict[str, list[dict]] = {}
        self.client_tokens: dict[tuple[str, str], tuple[str, list, bytes, list]] = {}
        self.consistency_defaults = dict(CONSISTENCY, **(consistency or {}))
        self.consistency: dict[str, dict[str, float]] = {}
        # (account, instance id) -> {"at", "visible_at", "usable_at" (None: no marker line)}
        self.launches: dict[tuple[str, str], dict] = {}
        # (account, instance profile name) -> when EC2 sees it
        self.profiles_visible: dict[tuple[str, str], float] = {}
        # (account, command id) -> {"sent", "comment", "document", "invocations": {id: {...}}}
        self.commands: dict[tuple[str, str], dict] = {}
        self.command_faults: list[dict] = []
        # account -> {"policy", "principal", "principal_arn", "access_key_id", "missing_iam_entities"}
        self.enforced: dict[str, dict] = {}

    # ---- WSGI entry -------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if path.startswith("/_front/"):
            return self.control(environ, start_response, path, body)

        account = account_of(environ)
        service, action, is_json = classify(environ, body)
        entry = {"service": service, "action": action, "at": time.time()}
        if service == "ec2" and not is_json:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            ids = [v[0] for k, v in sorted(form.items()) if k.startswith("InstanceId.")]
            if ids:
                entry["instances"] = ids
        with self.lock:
            self.calls.setdefault(account, []).append(entry)
        def recording_start_response(status, headers, *rest):
            entry["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, *rest)

        try:
            refused = self.authorize(environ, recording_start_response, body, account, service, action, is_json,
                                     entry)
            if refused is not None:
                return refused
            # The answer is built in full before it is returned, so this is the call's time.
            return self.answer(environ, recording_start_response, body, account, service, action, is_json)
        finally:
            entry["took"] = time.time() - entry["at"]

    def answer(self, environ, start_response, body, account, service, action, is_json, faults=True):
        region = region_of(environ)
        fault = self.take_fault(account, action, body) if faults else None
        if fault is not None:
            if fault.get("delay") and fault.get("after") and not fault.get("code"):
                # The call takes effect now; its answer arrives only after the hold.
                answered = self.answer(environ, start_response, body, account, service, action, is_json,
                                       faults=False)
                time.sleep(float(fault["delay"]))
                return answered
            if fault.get("delay"):
                time.sleep(float(fault["delay"]))
            if fault.get("code") and fault.get("after"):
                # The call takes effect; only its answer is lost.
                def discard(*_args):
                    return lambda _data: None

                self.answer(environ, discard, body, account, service, action, is_json, faults=False)
                return aws_error(start_response, service, is_json, fault)
            if fault.get("code"):
                return aws_error(start_response, service, is_json, fault)

        if service == "ssm" and action == "DescribeInstanceInformation":
            return json_answer(start_response, self.instance_information(account, region, body))
        if service == "ssm" and action == "DescribeSessions":
            return json_answer(start_response, self.describe_sessions(account, body))
        if service == "ssm" and action == "TerminateSession":
            session_id = json.loads(body or b"{}").get("SessionId")
            with self.lock:
                for session in self.sessions.get(account, []):
                    if session["SessionId"] == session_id:
                        session["Status"] = "Terminated"
            return json_answer(start_response, {"SessionId": session_id})
        if service == "ssm" and action == "SendCommand":
            return self.send_command(environ, start_response, account, region, body)
        if service == "ssm" and action == "GetCommandInvocation":
            return self.get_command_invocation(environ, start_response, account, body)
        if service == "ssm" and action == "ListCommandInvocations":
            return json_answer(start_response, self.list_command_invocations(account, body))

        if service == "ec2" and action == "RunInstances":
            return self.run_instances(environ, start_response, account, body)
        if service == "ec2" and action == "DescribeInstances":
            return self.describe_instances(environ, start_response, account, body)
        if service == "ec2" and action == "TerminateInstances":
            hidden = self.hidden_instances(account, instance_ids_of(query_params(environ, body)))
            if hidden:
                return instance_not_found(start_response, hidden)
            return self.app(environ, start_response)
        if service == "iam" and action in ("CreateInstanceProfile", "AddRoleToInstanceProfile"):
            return self.instance_profile_changed(environ, start_response, account, body)
        if service == "ecs" and action in ("CreateService", "UpdateService", "RunTask",
                                           "DescribeServices", "DescribeTasks"):
            return self.ecs_exec(environ, start_response, account, action, body)
        return self.app(environ, start_response)

    def describe_sessions(self, account, body):
        """Active sessions (``State: Active``), or ended ones (``History``), by the filters."""
        request = json.loads(body or b"{}")
        active = request.get("State", "Active") == "Active"
        filters = {f.get("key"): f.get("value") for f in request.get("Filters", [])}
        with self.lock:
            sessions = [dict(s) for s in self.sessions.get(account, [])]
        found = [
            s for s in sessions
            if (s["Status"] != "Terminated") == active
            and all(s.get(key) == value for key, value in filters.items() if key in ("Target", "Owner"))
        ]
        return {"Sessions": found}

    # ---- control endpoints ------------------------------------------------------------------
    def control(self, environ, start_response, path, body):
        method = environ["REQUEST_METHOD"]
        if path == "/_front/faults" and method == "POST":
            spec = json.loads(body or b"{}")
            spec.setdefault("times", 1)
            with self.lock:
                self.faults.append(spec)
            return json_answer(start_response, {"ok": True})
        if path == "/_front/faults" and method == "DELETE":
            with self.lock:
                self.faults.clear()
            return json_answer(start_response, {"ok": True})
        if path == "/_front/ssm" and method == "POST":
            spec = json.loads(body or b"{}")
            with self.lock:
                if spec.get("online", True):
                    self.ssm_offline.discard(spec["account"])
                else:
                    self.ssm_offline.add(spec["account"])
            return json_answer(start_response, {"ok": True})
        if path == "/_front/sessions" and method == "POST":
            spec = json.loads(body or b"{}")
            owner = spec["owner"]
            session = {"SessionId": f"{owner.rsplit('/', 1)[-1]}-{uuid.uuid4().hex[:17]}",
                       "Target": spec["target"], "Owner": owner, "Status": "Connected",
                       "StartDate": time.time()}
            with self.lock:
                self.sessions.setdefault(spec["account"], []).append(session)
            return json_answer(start_response, session)
        if path == "/_front/sessions":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            account = query.get("account", [DEFAULT_ACCOUNT])[0]
            with self.lock:
                return json_answer(start_response, list(self.sessions.get(account, [])))
        if path == "/_front/ecs-agent" and method == "POST":
            spec = json.loads(body or b"{}")
            with self.lock:
                self.agent_status[(spec["account"], spec["task_arn"])] = spec["status"]
            return json_answer(start_response, {"ok": True})
        if path == "/_front/calls":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            account = query.get("account", [DEFAULT_ACCOUNT])[0]
            with self.lock:
                calls = list(self.calls.get(account, []))
            return json_answer(start_response, calls)
        if path == "/_front/consistency" and method == "POST":
            return self.set_consistency(start_response, json.loads(body or b"{}"))
        if path == "/_front/consistency":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            return json_answer(start_response, self.windows(query.get("account", [DEFAULT_ACCOUNT])[0]))
        if path == "/_front/commands" and method == "POST":
            spec = json.loads(body or b"{}")
            spec.setdefault("times", 1)
            spec.setdefault("status", "Failed")
            if spec["status"] not in COMMAND_FAULT_DETAILS:
                return control_error(start_response, f"status must be one of {sorted(COMMAND_FAULT_DETAILS)}")
            with self.lock:
                self.command_faults.append(spec)
            return json_answer(start_response, {"ok": True})
        if path == "/_front/commands" and method == "DELETE":
            with self.lock:
                self.command_faults.clear()
            return json_answer(start_response, {"ok": True})
        if path == "/_front/usable":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            account = query.get("account", [DEFAULT_ACCOUNT])[0]
            with self.lock:
                usable = {i: r["usable_at"] for (a, i), r in self.launches.items()
                          if a == account and r["usable_at"] is not None}
            return json_answer(start_response, usable)
        if path == "/_front/iam":
            return self.iam_control(environ, start_response, method, body)
        if path == "/_front/health":
            return json_answer(start_response, {"ok": True})
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"ok":false}']

    def iam_control(self, environ, start_response, method, body):
        if method == "GET":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            with self.lock:
                found = self.enforced.get(query.get("account", [DEFAULT_ACCOUNT])[0])
            return json_answer(start_response, found or {})
        spec = json.loads(body or b"{}")
        if not spec.get("account"):
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            spec["account"] = query.get("account", [None])[0]
        account = spec.get("account")
        if not account:
            return control_error(start_response, "account is required")
        if method == "DELETE":
            with self.lock:
                self.enforced.pop(account, None)
            return json_answer(start_response, {"ok": True})
        try:
            iam_eval.validate(spec.get("policy"))
        except ValueError as e:
            return control_error(start_response, f"policy: {e}")
        missing = spec.get("missing_iam_entities", "not-found")
        if missing not in ("not-found", "default-path"):
            return control_error(start_response, "missing_iam_entities is not-found or default-path")
        principal = spec.get("principal") or "principal"
        principal_arn = principal if principal.startswith("arn:") else (
            f"arn:aws:sts::{account}:assumed-role/{principal}/{spec.get('session', 'fargate-connect')}")
        with self.lock:
            self.enforced[account] = {"policy": spec["policy"], "principal": principal,
                                      "principal_arn": principal_arn, "access_key_id": spec.get("access_key_id"),
                                      "missing_iam_entities": missing}
        return json_answer(start_response, {"ok": True})

    def authorize(self, environ, start_response, body, account, service, action, is_json, entry):
        """Refuses the call as AWS would (returns the answer) when the account enforces a policy on
        its signer and one of the call's authorization requests is not allowed; else None."""
        with self.lock:
            enforced = self.enforced.get(account)
        if enforced is None or (enforced["access_key_id"] and access_key_of(environ) != enforced["access_key_id"]):
            return None
        entry["principal"] = enforced["principal"]
        params = json.loads(body or b"{}") if is_json else query_params(environ, body)
        request = iam_calls.Call(
            service=service, action=action, params=params, account=account, region=region_of(environ),
            principal_arn=enforced["principal_arn"],
            hidden_instance=lambda i: bool(self.hidden_instances(account, [i])),
            hidden_profile=lambda name: self.profile_hidden(account, name))
        try:
            needed = iam_calls.authorizations(request)
        except Exception as e:  # noqa: BLE001 - a gap in the table must not pass silently
            import traceback

            traceback.print_exc()
            entry["denied"] = f"{service}:{action}: deriving its authorization failed: {e!r}"
            return aws_error(start_response, service, is_json, {
                "code": "InternalFailure", "status": 500,
                "message": f"moto_front could not derive the authorization of {service}:{action}: {e!r}"})
        for auth in needed:
            if auth.missing and enforced["missing_iam_entities"] == "not-found":
                continue  # IAM answers NoSuchEntity
            decision = iam_eval.evaluate(enforced["policy"], auth)
            if decision.allowed:
                continue
            entry["denied"] = auth.describe()
            print(f"DENIED {account} {service}:{action}: {auth.describe()} {auth.context}", file=sys.stderr, flush=True)
            return access_denied(start_response, service, is_json, enforced["principal_arn"], auth, decision)
        return None

    def set_consistency(self, start_response, spec):
        account = spec.pop("account", None)
        if not account:
            return control_error(start_response, "account is required")
        unknown = sorted(set(spec) - set(CONSISTENCY))
        if unknown:
            return control_error(start_response, f"unknown settings {unknown}; known: {sorted(CONSISTENCY)}")
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in spec.values()):
            return control_error(start_response, "settings are seconds, >= 0")
        with self.lock:
            self.consistency.setdefault(account, {}).update({k: float(v) for k, v in spec.items()})
        return json_answer(start_response, self.windows(account))

    def windows(self, account) -> dict[str, float]:
        """The account's consistency windows: its own settings over the process-wide defaults."""
        with self.lock:
            return dict(self.consistency_defaults, **self.consistency.get(account, {}))

    def setting(self, account, name) -> float:
        return self.windows(account)[name]

    def take_fault(self, account, action, body):
        with self.lock:
            for fault in self.faults:
                if fault.get("action") != action or fault["times"] <= 0:
                    continue
                if fault.get("account", account) != account:
                    continue
                if fault.get("match") and fault["match"].encode() not in body:
                    continue
                fault["times"] -= 1
                return dict(fault)
        return None

    # ---- SSM from moto's EC2 state ------------------------------------------------------------
    def managed_nodes(self, account, region) -> list:
        """moto's instances that are registered with SSM now: running, with an instance profile,
        launched at least ``--ssm-registration-delay`` ago, in an account whose agents are up."""
        from moto.ec2.models import ec2_backends

        with self.lock:
            if account in self.ssm_offline:
                return []
        now = time.time()
        nodes = []
        for reservation in ec2_backends[account][region].reservations.values():
            for instance in reservation.instances:
                if instance.state != "running" or not getattr(instance, "iam_instance_profile", None):
                    continue
                if now - _epoch(instance.launch_time) < self.ssm_delay:
                    continue
                nodes.append(instance)
        return nodes

    def instance_information(self, account, region, body):
        request = json.loads(body or b"{}")
        wanted = set()
        for f in request.get("Filters", []) or []:
            if f.get("Key") == "InstanceIds":
                wanted.update(f.get("Values", []))
        for f in request.get("InstanceInformationFilterList", []) or []:
            if f.get("key") == "InstanceIds":
                wanted.update(f.get("valueSet", []))
        now = time.time()
        out = []
        for instance in self.managed_nodes(account, region):
            if wanted and instance.id not in wanted:
                continue
            out.append({
                "InstanceId": instance.id,
                "PingStatus": "Online",
                "LastPingDateTime": now,
                "AgentVersion": "3.3.0.0",
                "IsLatestVersion": True,
                "PlatformType": "Linux",
                "PlatformName": "Amazon Linux",
                "PlatformVersion": "2023",
                "ResourceType": "EC2Instance",
                "IPAddress": getattr(instance, "private_ip", ""),
                "ComputerName": getattr(instance, "private_dns_name", ""),
            })
        return {"InstanceInformationList": out}

    # ---- EC2 RunInstances: ClientToken, instance profiles, launches ---------------------------
    def run_instances(self, environ, start_response, account, body):
        form = query_params(environ, body)
        token = form.get("ClientToken", [None])[0]
        # What EC2 compares for a repeated token: every parameter of the request.
        params = sorted((k, v) for k, v in form.items() if k not in ("Action", "Version", "ClientToken"))
        if token:
            with self.lock:
                seen = self.client_tokens.get((account, token))
            if seen and seen[3] != params:
                return aws_error(start_response, "ec2", False, {
                    "code": "IdempotentParameterMismatch", "status": 400,
                    "message": "Arguments on this idempotent request are inconsistent with arguments used in "
                    "previous request(s).",
                })
            if seen:
                status, headers, payload, _ = seen
                start_response(status, headers)
                return [payload]
        profile = instance_profile_of(form)
        if profile and self.profile_hidden(account, profile[2]):
            return invalid_instance_profile(start_response, profile)
        status, headers, payload = call(self.app, environ)
        if not status.startswith("200"):
            if profile and b"NoSuchEntity" in payload:
                return invalid_instance_profile(start_response, profile)
            start_response(status, headers)
            return [payload]
        if token:
            with self.lock:
                self.client_tokens[(account, token)] = (status, headers, payload, params)
        if form.get("InstanceMarketOptions.MarketType", [""])[0].lower() == "spot":
            iam_calls.create_spot_role(account)  # as EC2 does on an account's first spot launch
        self.record_launches(account, instance_ids_in(payload), form.get("UserData", [""])[0])
        start_response(status, headers)
        return [payload]

    def record_launches(self, account, instance_ids, user_data):
        """Remembers when each instance was launched, when EC2 will show it, and (if its user
        data creates the readiness marker) when it will be usable."""
        now = time.time()
        windows = self.windows(account)
        usable_at = now + windows["cloud_init_secs"] if creates_ready_marker(user_data) else None
        with self.lock:
            for instance_id in instance_ids:
                self.launches[(account, instance_id)] = {
                    "at": now,
                    "visible_at": now + windows["instance_not_found_secs"],
                    "usable_at": usable_at,
                }

    def hidden_instances(self, account, instance_ids) -> list[str]:
        """Those of the instances that EC2 does not show yet (eventual consistency)."""
        now = time.time()
        with self.lock:
            return [i for i in instance_ids if self.launches.get((account, i), {}).get("visible_at", 0) > now]

    def profile_hidden(self, account, name) -> bool:
        with self.lock:
            return self.profiles_visible.get((account, name), 0) > time.time()

    def instance_profile_changed(self, environ, start_response, account, body):
        """CreateInstanceProfile / AddRoleToInstanceProfile: EC2 sees the change later."""
        status, headers, payload = call(self.app, environ)
        if status.startswith("200"):
            name = query_params(environ, body).get("InstanceProfileName", [""])[0]
            visible_at = time.time() + self.setting(account, "profile_propagation_secs")
            with self.lock:
                self.profiles_visible[(account, name)] = visible_at
        start_response(status, headers)
        return [payload]

    def describe_instances(self, environ, start_response, account, body):
        named = instance_ids_of(query_params(environ, body))
        hidden = self.hidden_instances(account, named)
        if hidden:
            return instance_not_found(start_response, hidden)
        status, headers, payload = call(self.app, environ)
        if status.startswith("200"):
            payload = instance_groups_from_interfaces(payload)
            if not named:
                payload = without_instances(payload, self.hidden_instances(account, instance_ids_in(payload)))
            headers = [(k, str(len(payload)) if k.lower() == "content-length" else v) for k, v in headers]
        start_response(status, headers)
        return [payload]

    # ---- SSM Run Command ----------------------------------------------------------------------
    def send_command(self, environ, start_response, account, region, body):
        request = json.loads(body or b"{}")
        named = list(request.get("InstanceIds") or [])
        nodes = self.managed_nodes(account, region)
        online = {n.id for n in nodes}
        invalid = [i for i in named if i not in online]
        if invalid:
            return aws_error(start_response, "ssm", True, {
                "code": "InvalidInstanceId", "status": 400,
                "message": f"Instances [[{', '.join(invalid)}]] not in a valid state for account {account}",
            })
        targeted = named + [i for i in targets_of(request.get("Targets") or [], nodes) if i not in named]
        # moto resolves Targets as EC2 filters (Key=InstanceIds fails there): give it the ids.
        forward = json.dumps(dict(request, InstanceIds=targeted, Targets=[])).encode()
        environ["wsgi.input"] = io.BytesIO(forward)
        environ["CONTENT_LENGTH"] = str(len(forward))
        status, headers, payload = call(self.app, environ)
        if not status.startswith("200"):
            start_response(status, headers)
            return [payload]
        answer = json.loads(payload)
        command = answer["Command"]
        self.record_command(account, command["CommandId"], request, targeted)
        # As SSM answers SendCommand: nothing has run yet.
        command.update(InstanceIds=named, Targets=request.get("Targets") or [], Status="Pending",
                       StatusDetails="Pending", TargetCount=0, CompletedCount=0, ErrorCount=0,
                       DeliveryTimedOutCount=0)
        return json_answer(start_response, answer)

    def record_command(self, account, command_id, request, instance_ids):
        """Fixes each invocation's timeline and outcome when the command is sent."""
        text = "\n".join((request.get("Parameters") or {}).get("commands") or [])
        windows = self.windows(account)
        sent = time.time()
        starts = sent + windows["invocation_lag_secs"]
        ends = starts + windows["command_run_secs"]
        fault = self.take_command_fault(account, text)
        invocations = {}
        for instance_id in instance_ids:
            outcome = command_fault_outcome(fault) if fault else self.command_outcome(account, instance_id, text, starts)
            invocations[instance_id] = dict(outcome, starts=starts, ends=ends)
        with self.lock:
            self.commands[(account, command_id)] = {
                "id": command_id,
                "sent": sent,
                "comment": request.get("Comment", ""),
                "document": request.get("DocumentName", ""),
                "invocations": invocations,
            }

    def command_outcome(self, account, instance_id, text, starts) -> dict:
        """The readiness probe succeeds only on a usable instance; anything else succeeds."""
        if READY_MARKER not in text:
            return {"status": "Success", "code": 0, "stdout": "", "stderr": ""}
        with self.lock:
            usable_at = self.launches.get((account, instance_id), {}).get("usable_at")
        if usable_at is not None and usable_at <= starts:
            return {"status": "Success", "code": 0, "stdout": "", "stderr": ""}
        return {"status": "Failed", "code": 1, "stdout": "", "stderr": "not ready"}

    def take_command_fault(self, account, text):
        with self.lock:
            for fault in self.command_faults:
                if fault["times"] <= 0 or fault.get("account", account) != account:
                    continue
                if fault.get("match") and fault["match"] not in text:
                    continue
                fault["times"] -= 1
                return dict(fault)
        return None

    def get_command_invocation(self, environ, start_response, account, body):
        request = json.loads(body or b"{}")
        with self.lock:
            command = self.commands.get((account, request.get("CommandId")))
        if command is None:
            return self.app(environ, start_response)
        invocation = command["invocations"].get(request.get("InstanceId"))
        now = time.time()
        if invocation is None or now < invocation["starts"]:
            return aws_error(start_response, "ssm", True, {"code": "InvocationDoesNotExist", "message": None})
        plugin = request.get("PluginName")
        if plugin and plugin != RUN_SHELL_PLUGIN:
            return aws_error(start_response, "ssm", True, {"code": "InvalidPluginName", "message": None})
        return json_answer(start_response, invocation_answer(command, request["InstanceId"], invocation, now))

    def list_command_invocations(self, account, body):
        """Invocations that exist by now, oldest command first (no Filters or paging)."""
        request = json.loads(body or b"{}")
        wanted_command, wanted_instance = request.get("CommandId"), request.get("InstanceId")
        with self.lock:
            commands = sorted((c for (a, c_id), c in self.commands.items()
                               if a == account and wanted_command in (None, c_id)), key=lambda c: c["sent"])
        now = time.time()
        out = []
        for command in commands:
            for instance_id, invocation in command["invocations"].items():
                if wanted_instance not in (None, instance_id) or now < invocation["starts"]:
                    continue
                out.append(invocation_listing(command, instance_id, invocation, now, request.get("Details", False)))
        return {"CommandInvocations": out}

    # ---- ECS enableExecuteCommand -------------------------------------------------------------
    def fill_containers(self, account, region, task):
        _fill_containers(account, region, task)

    def ecs_exec(self, environ, start_response, account, action, body):
        request = json.loads(body or b"{}")
        status, headers, payload = call(self.app, environ)
        if not status.startswith("200"):
            start_response(status, headers)
            return [payload]
        answer = json.loads(payload or b"{}")
        with self.lock:
            if action in ("CreateService", "UpdateService") and "enableExecuteCommand" in request:
                arn = answer.get("service", {}).get("serviceArn")
                if arn:
                    self.exec_services[(account, arn)] = bool(request["enableExecuteCommand"])
            if action in ("CreateService", "UpdateService") and "availabilityZoneRebalancing" in request:
                arn = answer.get("service", {}).get("serviceArn")
                if arn:
                    self.az_rebalancing[(account, arn)] = request["availabilityZoneRebalancing"]
            if action == "RunTask":
                for task in answer.get("tasks", []):
                    self.exec_tasks[(account, task["taskArn"])] = bool(
                        request.get("enableExecuteCommand", False)
                    )
            for svc in answer.get("services", []) + ([answer["service"]] if "service" in answer else []):
                svc["enableExecuteCommand"] = self.exec_services.get((account, svc.get("serviceArn")), False)
                # ECS's default for a service created without it.
                svc["availabilityZoneRebalancing"] = self.az_rebalancing.get((account, svc.get("serviceArn")), "ENABLED")
            for task in answer.get("tasks", []):
                if action == "DescribeTasks":
                    self.fill_containers(account, region_of(environ), task)
                enabled = self.exec_tasks.get((account, task.get("taskArn")), False)
                task["enableExecuteCommand"] = enabled
                agent = self.agent_status.get((account, task.get("taskArn")))
                if enabled:
                    for container in task.get("containers", []):
                        container["managedAgents"] = [{
                            "name": "ExecuteCommandAgent",
                            "lastStatus": agent or ("RUNNING" if task.get("lastStatus") == "RUNNING" else "STOPPED"),
                            "lastStartedAt": time.time(),
                        }]
        data = json.dumps(answer).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]


def _fill_containers(account, region, task):
    """Every container of the task definition, as ECS lists them (moto lists only the first)."""
    from moto.ecs.models import ecs_backends

    try:
        definition = ecs_backends[account][region].describe_task_definition(task["taskDefinitionArn"])
    except Exception:  # noqa: BLE001 - leave moto's answer as it is
        return
    existing = {c.get("name"): c for c in task.get("containers", [])}
    containers = []
    for spec in definition.container_definitions:
        name = spec.get("name")
        container = dict(existing.get(name) or {
            "containerArn": f"{task['taskArn'].replace(':task/', ':container/')}/{name}",
            "taskArn": task["taskArn"],
            "name": name,
            "image": spec.get("image"),
            "networkInterfaces": [],
        })
        container["lastStatus"] = task.get("lastStatus", "RUNNING")
        container["healthStatus"] = "UNKNOWN"
        containers.append(container)
    task["containers"] = containers


def call(app, environ):
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    chunks = app(environ, start_response)
    try:
        payload = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return captured["status"], captured["headers"], payload


def classify(environ, body):
    """(service, action, is_json_protocol) of an AWS request."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target and "." in target:
        prefix, action = target.split(".", 1)
        return JSON_SERVICES.get(prefix, prefix.lower()), action, True
    service = ""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        parts = auth.split("Credential=", 1)[1].split(",")[0].split("/")
        if len(parts) >= 4:
            service = parts[3]
    action = ""
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else {}
    if "Action" in form:
        action = form["Action"][0]
    else:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        action = query.get("Action", [""])[0]
    return service, action, False


def instance_groups_from_interfaces(payload: bytes) -> bytes:
    """Fills each instance's empty ``<groupSet/>`` with its primary interface's groups."""
    text = payload.decode("utf-8")
    out, at = [], 0
    while True:
        start = text.find("<networkInterfaceSet>", at)
        if start < 0:
            break
        end = text.find("</networkInterfaceSet>", start)
        groups_at = text.find("<groupSet>", start, end)
        empty = text.find("<groupSet/>", end)
        next_instance = text.find("<networkInterfaceSet>", end)
        if groups_at < 0 or empty < 0 or (0 <= next_instance < empty):
            out.append(text[at:end])
            at = end
            continue
        groups = text[groups_at : text.find("</groupSet>", groups_at) + len("</groupSet>")]
        out.append(text[at:empty] + groups)
        at = empty + len("<groupSet/>")
    out.append(text[at:])
    return "".join(out).encode("utf-8")


def query_params(environ, body) -> dict[str, list[str]]:
    """The parameters of a query-protocol request (EC2, IAM): the form body, else the URL."""
    if body:
        return urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))


def instance_ids_of(form) -> list[str]:
    """The ``InstanceId.N`` parameters, in order."""
    numbered = [(k.split(".", 1)[1], v[0]) for k, v in form.items() if k.startswith("InstanceId.")]
    return [v for n, v in sorted((int(n), v) for n, v in numbered if n.isdigit())]


def instance_ids_in(payload: bytes) -> list[str]:
    """The instance ids in an EC2 answer (RunInstances, DescribeInstances), in order, once each."""
    found = re.findall(r"<instanceId>(i-[0-9a-zA-Z]+)</instanceId>", payload.decode("utf-8", "replace"))
    return list(dict.fromkeys(found))


def instance_profile_of(form):
    """``(parameter, value, profile name)`` of RunInstances' instance profile, or None."""
    arn = form.get("IamInstanceProfile.Arn", [None])[0]
    if arn:
        return "arn", arn, arn.rsplit("/", 1)[-1]
    name = form.get("IamInstanceProfile.Name", [None])[0]
    if name:
        return "name", name, name
    return None


def invalid_instance_profile(start_response, profile):
    """EC2's answer to an instance profile it does not know (yet)."""
    kind, value, _ = profile
    what = "ARN" if kind == "arn" else "name"
    return aws_error(start_response, "ec2", False, {
        "code": "InvalidParameterValue", "status": 400,
        "message": f"Value ({value}) for parameter iamInstanceProfile.{kind} is invalid. "
                   f"Invalid IAM Instance Profile {what}",
    })


def instance_not_found(start_response, instance_ids):
    if len(instance_ids) > 1:
        message = f"The instance IDs '{', '.join(instance_ids)}' do not exist"
    else:
        message = f"The instance ID '{instance_ids[0]}' does not exist"
    return aws_error(start_response, "ec2", False,
                     {"code": "InvalidInstanceID.NotFound", "message": message, "status": 400})


def xml_items(text, start, end) -> list[tuple[int, int]]:
    """Spans of the ``<item>`` elements directly inside ``text[start:end]``."""
    spans, depth, opened = [], 0, start
    for m in re.compile(r"<item>|</item>|<item/>").finditer(text, start, end):
        token = m.group()
        if token == "<item/>":
            if depth == 0:
                spans.append((m.start(), m.end()))
        elif token == "<item>":
            if depth == 0:
                opened = m.start()
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                spans.append((opened, m.end()))
    return spans


def without_instances(payload: bytes, hidden) -> bytes:
    """A DescribeInstances answer without the hidden instances (and reservations left empty)."""
    if not hidden:
        return payload
    text = payload.decode("utf-8")
    names = [f"<instanceId>{i}</instanceId>" for i in hidden]
    set_start = text.find("<reservationSet>")
    set_end = text.rfind("</reservationSet>")
    if set_start < 0 or set_end < 0:
        return payload
    out, at = [], set_start + len("<reservationSet>")
    out.append(text[:at])
    for r_start, r_end in xml_items(text, at, set_end):
        out.append(text[at:r_start])
        at = r_end
        reservation = text[r_start:r_end]
        inner_start = reservation.find("<instancesSet>")
        inner_end = reservation.find("</instancesSet>")
        if inner_start < 0 or inner_end < 0:
            out.append(reservation)
            continue
        inner_start += len("<instancesSet>")
        kept = [reservation[a:b] for a, b in xml_items(reservation, inner_start, inner_end)
                if not any(n in reservation[a:b] for n in names)]
        if kept:
            out.append(reservation[:inner_start] + "".join(kept) + reservation[inner_end:])
    out.append(text[at:])
    return "".join(out).encode("utf-8")


def creates_ready_marker(user_data: str) -> bool:
    """True if the (base64, maybe gzipped) user data has a line, not a comment, that touches
    the readiness marker."""
    if not user_data:
        return False
    try:
        raw = base64.b64decode(user_data.replace(" ", "+"))
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (binascii.Error, ValueError, OSError, EOFError):
        return False
    return any(
        READY_MARKER in line and "touch" in line and not line.lstrip().startswith("#")
        for line in raw.decode("utf-8", "replace").splitlines()
    )


def targets_of(targets, nodes) -> list[str]:
    """The managed nodes that SendCommand ``Targets`` select (``InstanceIds``, ``tag:KEY``,
    ``tag-key``; every target must match)."""
    chosen = []
    for node in nodes:
        tags = {t["key"]: t["value"] for t in node.get_tags()}
        matches = []
        for target in targets:
            key, values = target.get("Key", ""), target.get("Values") or []
            if key == "InstanceIds":
                matches.append(node.id in values or "*" in values)
            elif key.startswith("tag:"):
                matches.append(tags.get(key[4:]) in values)
            elif key == "tag-key":
                matches.append(any(v in tags for v in values))
            else:
                matches.append(False)
        if targets and all(matches):
            chosen.append(node.id)
    return chosen


def command_fault_outcome(fault) -> dict:
    status = fault["status"]
    return {
        "status": status,
        "details": COMMAND_FAULT_DETAILS[status],
        "code": int(fault.get("response_code", 1 if status == "Failed" else -1)),
        "stdout": fault.get("stdout", ""),
        "stderr": fault.get("stderr", "injected failure"),
    }


def invocation_state(invocation, now) -> dict:
    """Status, StatusDetails, ResponseCode and output of an invocation at ``now``."""
    if now < invocation["ends"]:
        return {"Status": "InProgress", "StatusDetails": "InProgress", "ResponseCode": -1,
                "StandardOutputContent": "", "StandardErrorContent": ""}
    return {"Status": invocation["status"], "StatusDetails": invocation.get("details", invocation["status"]),
            "ResponseCode": invocation["code"], "StandardOutputContent": invocation["stdout"],
            "StandardErrorContent": invocation["stderr"]}


def invocation_answer(command, instance_id, invocation, now) -> dict:
    """GetCommandInvocation's answer (its times are ISO 8601 strings)."""
    state = invocation_state(invocation, now)
    done = state["Status"] != "InProgress"
    end = invocation["ends"] if done else now
    return dict(state, **{
        "CommandId": command["id"],
        "InstanceId": instance_id,
        "Comment": command["comment"],
        "DocumentName": command["document"],
        "DocumentVersion": "$DEFAULT",
        "PluginName": RUN_SHELL_PLUGIN,
        "ExecutionStartDateTime": iso8601(invocation["starts"]),
        "ExecutionElapsedTime": f"PT{max(0.0, end - invocation['starts']):.3f}S",
        "ExecutionEndDateTime": iso8601(invocation["ends"]) if done else "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
    })


def invocation_listing(command, instance_id, invocation, now, details) -> dict:
    """One ``CommandInvocations`` entry of ListCommandInvocations (times are epoch seconds)."""
    state = invocation_state(invocation, now)
    entry = {
        "CommandId": command["id"],
        "InstanceId": instance_id,
        "InstanceName": "",
        "Comment": command["comment"],
        "DocumentName": command["document"],
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": command["sent"],
        "Status": state["Status"],
        "StatusDetails": state["StatusDetails"],
        "TraceOutput": "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
        "ServiceRole": "",
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
    }
    if details:
        plugin = {
            "Name": RUN_SHELL_PLUGIN,
            "Status": state["Status"],
            "StatusDetails": state["StatusDetails"],
            "ResponseCode": state["ResponseCode"],
            "ResponseStartDateTime": invocation["starts"],
            "Output": state["StandardOutputContent"] + state["StandardErrorContent"],
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
        }
        if state["Status"] != "InProgress":
            plugin["ResponseFinishDateTime"] = invocation["ends"]
        entry["CommandPlugins"] = [plugin]
    return entry


def iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def control_error(start_response, message):
    data = json.dumps({"ok": False, "error": message}).encode()
    start_response("400 Bad Request", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def account_of(environ) -> str:
    """The account a call is for: the ``x-moto-account-id`` header, else an access key id of the
    form ``ACCT<12 digits>`` in the SigV4 ``Authorization`` header (which then sets the header,
    so moto itself files the call there too), else moto's default."""
    account = environ.get("HTTP_X_MOTO_ACCOUNT_ID")
    if account:
        return account
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential=ACCT"
    at = auth.find(marker)
    if at >= 0:
        digits = auth[at + len(marker) : at + len(marker) + 12]
        if len(digits) == 12 and digits.isdigit():
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = digits
            return digits
    return DEFAULT_ACCOUNT


def access_key_of(environ) -> str:
    """The access key id a SigV4 request is signed with."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" not in auth:
        return ""
    return auth.split("Credential=", 1)[1].split("/", 1)[0]


def access_denied(start_response, service, is_json, principal_arn, auth, decision):
    """AWS's refusal of an authorization request, in the service's shape."""
    why = ("with an explicit deny in an identity-based policy" if decision.outcome == iam_eval.EXPLICIT_DENY
           else f"because no identity-based policy allows the {auth.action} action")
    message = f"User: {principal_arn} is not authorized to perform: {auth.action} on resource: {auth.resource} {why}"
    if service == "ec2" and auth.action == "iam:CreateServiceLinkedRole":
        return aws_error(start_response, service, False, {
            "code": "AuthFailure.ServiceLinkedRoleCreationNotPermitted", "status": 403,
            "message": "The provided credentials do not have permission to create the service-linked role for "
                       f"EC2 Spot Instances. {message}"})
    if service == "ec2":
        return aws_error(start_response, service, False, {
            "code": "UnauthorizedOperation", "status": 403,
            "message": f"You are not authorized to perform this operation. {message}"})
    if is_json:
        return aws_error(start_response, service, True, {"code": "AccessDeniedException", "status": 400,
                                                         "message": message})
    return aws_error(start_response, service, False, {"code": "AccessDenied", "status": 403, "message": message})


def region_of(environ):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        parts = auth.split("Credential=", 1)[1].split(",")[0].split("/")
        if len(parts) >= 3:
            return parts[2]
    return "us-east-1"


def json_answer(start_response, obj):
    data = json.dumps(obj, default=str).encode()
    start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"),
                              ("Content-Length", str(len(data)))])
    return [data]


def aws_error(start_response, service, is_json, fault):
    """An AWS-shaped error. ``message`` None leaves it out (as SSM does for some errors)."""
    code = fault["code"]
    message = fault.get("message", code)
    status = int(fault.get("status") or SERVER_ERROR_STATUS.get(code, 400))
    reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(status, "Error")
    request_id = str(uuid.uuid4())
    text = escape(message or "")
    if is_json:
        error = {"__type": code} if message is None else {"__type": code, "message": message}
        data = json.dumps(error).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code),
                   ("x-amzn-RequestId", request_id)]
    elif service == "ec2":
        data = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{text}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
        headers = [("Content-Type", "text/xml")]
    else:
        kind = "Receiver" if status >= 500 else "Sender"
        namespace = {"iam": ' xmlns="https://iam.amazonaws.com/doc/2010-05-08/"',
                     "sts": ' xmlns="https://sts.amazonaws.com/doc/2011-06-15/"'}.get(service, "")
        data = (f"<ErrorResponse{namespace}><Error><Type>{kind}</Type><Code>{code}</Code><Message>{text}</Message>"
                f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    headers.append(("Content-Length", str(len(data))))
    start_response(f"{status} {reason}", headers)
    return [data]


def _epoch(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def watch_stdin():
    """Exit as soon as the parent closes our standard input (or dies)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ssm-registration-delay", type=float,
                        default=float(os.environ.get("MOTO_FRONT_SSM_DELAY", "0")))
    for name, default in CONSISTENCY.items():
        parser.add_argument("--" + name.replace("_", "-"), type=float, metavar="SECS",
                            default=float(os.environ.get("MOTO_FRONT_" + name.upper(), default)))
    parser.add_argument("--no-stdin-watch", action="store_true")
    args = parser.parse_args()

    consistency = {name: getattr(args, name) for name in CONSISTENCY}
    front = Front(DomainDispatcherApplication(create_backend_app), args.ssm_registration_delay, consistency)
    server = make_server(args.host, args.port, front, threaded=True, request_handler=MotoRequestHandler)
    print(f"LISTENING {server.server_port}", flush=True)
    if not args.no_stdin_watch:
        threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
