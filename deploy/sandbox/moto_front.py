"""A thin WSGI layer in front of the moto server (the AWS emulator used by tests and the sandbox).

moto 5.2.5 lacks a few things fargate-connect relies on. This layer fills exactly those gaps from
moto's own state, shaped after the AWS API reference, and forwards everything else untouched:

* SSM ``DescribeInstanceInformation``: a running EC2 instance with an instance profile counts as
  registered with SSM (``PingStatus: Online``) once ``--ssm-registration-delay`` seconds have
  passed since its launch. That is what the real SSM agent does on an AL2023 AMI.
* SSM ``DescribeSessions`` / ``TerminateSession``: no Session Manager sessions exist here, so the
  list is empty and terminating one is a no-op success.
* ECS ``enableExecuteCommand``: moto does not store it. The layer remembers it from
  ``CreateService`` / ``UpdateService`` / ``RunTask`` requests and puts it back into
  ``DescribeServices`` / ``DescribeTasks`` answers, together with the ``ExecuteCommandAgent``
  managed agent (RUNNING) on every container of such a task, as real ECS reports it.
* ECS ``DescribeTasks`` lists only a task's first container: the layer lists every container of
  the task definition (moto's own), each with the task's status.
* EC2 ``RunInstances`` ignores ``ClientToken``: the layer answers a repeated token (same
  account) with the first answer, as EC2 does.
* EC2 ``DescribeInstances`` leaves an instance's own ``groupSet`` empty when it was launched
  into a subnet with ``SecurityGroupId``s (the groups are only on its network interface); the
  layer copies the primary interface's groups up, as EC2 reports them (Terraform reads them
  there).
* Accounts: moto takes the account from an ``x-moto-account-id`` header, which clients that
  cannot add headers (Terraform) do not send. An access key id ``ACCT<12 digits>`` names the
  account instead (the layer sets the header from it).

And it lets tests shape failures, which moto cannot do:

* ``POST /_front/faults`` with ``{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
  "message": "...", "status": 500, "times": 2, "account": "123456789012", "delay": 0.0,
  "match": "t3.micro"}`` answers the next ``times`` matching calls with an AWS-shaped error (XML
  for the query protocols, JSON for the JSON protocols); ``delay`` (seconds) holds the answer
  first; ``code`` may be omitted to only delay. ``match`` (optional) must occur in the raw
  request body. ``DELETE /_front/faults`` clears them.
* ``POST /_front/ssm`` ``{"account": ID, "online": false}`` keeps that account's instances from
  registering with SSM (an agent that never comes up); ``true`` restores it.
* ``POST /_front/ecs-agent`` ``{"account": ID, "task_arn": ARN, "status": "STOPPED"}`` reports that
  task's ExecuteCommandAgent with that status.
* ``GET /_front/calls?account=ID`` returns every AWS call seen for that account, in order, as
  ``[{"service": "ec2", "action": "RunInstances", "at": 1700000000.0, "took": 0.012}, ...]``
  (EC2 calls naming instances also carry ``"instances": [...]``); tests and the benchmarks
  count and time AWS calls there, not in our own code.

Run: ``python moto_front.py [--port 0] [--ssm-registration-delay 0]``. It prints
``LISTENING <port>`` once it accepts connections and exits when its standard input closes, so a
parent that dies never leaves it behind.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

DEFAULT_ACCOUNT = "123456789012"
JSON_SERVICES = {"AmazonSSM": "ssm", "AmazonEC2ContainerServiceV20141113": "ecs"}


class Front:
    def __init__(self, app, ssm_registration_delay: float):
        self.app = app
        self.ssm_delay = ssm_registration_delay
        self.lock = threading.Lock()
        self.faults: list[dict] = []
        self.calls: dict[str, list[dict]] = {}
        # (account, service ARN or "cluster/name") -> bool; task ARN -> bool
        self.exec_services: dict[tuple[str, str], bool] = {}
        self.exec_tasks: dict[tuple[str, str], bool] = {}
        self.ssm_offline: set[str] = set()
        self.agent_status: dict[tuple[str, str], str] = {}
        self.client_tokens: dict[tuple[str, str], tuple[str, list, bytes]] = {}

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
        try:
            # The answer is built in full before it is returned, so this is the call's time.
            return self.answer(environ, start_response, body, account, service, action, is_json)
        finally:
            entry["took"] = time.time() - entry["at"]

    def answer(self, environ, start_response, body, account, service, action, is_json):
        region = region_of(environ)
        fault = self.take_fault(account, action, body)
        if fault is not None:
            if fault.get("delay"):
                time.sleep(float(fault["delay"]))
            if fault.get("code"):
                return aws_error(start_response, service, is_json, fault)

        if service == "ssm" and action == "DescribeInstanceInformation":
            return json_answer(start_response, self.instance_information(account, region, body))
        if service == "ssm" and action == "DescribeSessions":
            return json_answer(start_response, {"Sessions": []})
        if service == "ssm" and action == "TerminateSession":
            return json_answer(start_response, {"SessionId": json.loads(body or b"{}").get("SessionId")})

        if service == "ec2" and action == "RunInstances":
            return self.run_instances(environ, start_response, account, body)
        if service == "ec2" and action == "DescribeInstances":
            status, headers, payload = call(self.app, environ)
            if status.startswith("200"):
                payload = instance_groups_from_interfaces(payload)
                headers = [(k, str(len(payload)) if k.lower() == "content-length" else v) for k, v in headers]
            start_response(status, headers)
            return [payload]
        if service == "ecs" and action in ("CreateService", "UpdateService", "RunTask",
                                           "DescribeServices", "DescribeTasks"):
            return self.ecs_exec(environ, start_response, account, action, body)
        return self.app(environ, start_response)

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
        if path == "/_front/health":
            return json_answer(start_response, {"ok": True})
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"ok":false}']

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
    def instance_information(self, account, region, body):
        from moto.ec2.models import ec2_backends

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
        with self.lock:
            if account in self.ssm_offline:
                return {"InstanceInformationList": out}
        backend = ec2_backends[account][region]
        for reservation in backend.reservations.values():
            for instance in reservation.instances:
                if instance.state != "running" or not getattr(instance, "iam_instance_profile", None):
                    continue
                if wanted and instance.id not in wanted:
                    continue
                launched = _epoch(instance.launch_time)
                if now - launched < self.ssm_delay:
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

    # ---- EC2 ClientToken ----------------------------------------------------------------------
    def run_instances(self, environ, start_response, account, body):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        token = form.get("ClientToken", [None])[0]
        if token:
            with self.lock:
                seen = self.client_tokens.get((account, token))
            if seen:
                status, headers, payload = seen
                start_response(status, headers)
                return [payload]
        status, headers, payload = call(self.app, environ)
        if token and status.startswith("200"):
            with self.lock:
                self.client_tokens[(account, token)] = (status, headers, payload)
        start_response(status, headers)
        return [payload]

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
            if action == "RunTask":
                for task in answer.get("tasks", []):
                    self.exec_tasks[(account, task["taskArn"])] = bool(
                        request.get("enableExecuteCommand", False)
                    )
            for svc in answer.get("services", []) + ([answer["service"]] if "service" in answer else []):
                svc["enableExecuteCommand"] = self.exec_services.get((account, svc.get("serviceArn")), False)
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
    code = fault["code"]
    message = fault.get("message", code)
    status = int(fault.get("status", 400))
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    request_id = str(uuid.uuid4())
    if is_json:
        data = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code),
                   ("x-amzn-RequestId", request_id)]
    elif service == "ec2":
        data = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
        headers = [("Content-Type", "text/xml")]
    else:
        data = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(data))))
    start_response(f"{status} {reason}", headers)
    return [data]


def _epoch(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime, timezone

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
    parser.add_argument("--no-stdin-watch", action="store_true")
    args = parser.parse_args()

    front = Front(DomainDispatcherApplication(create_backend_app), args.ssm_registration_delay)
    server = make_server(args.host, args.port, front, threaded=True, request_handler=MotoRequestHandler)
    print(f"LISTENING {server.server_port}", flush=True)
    if not args.no_stdin_watch:
        threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
