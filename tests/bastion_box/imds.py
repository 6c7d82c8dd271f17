"""The instance metadata service, as EC2 serves it with IMDSv2 required: a token from PUT
/latest/api/token, then GETs with that token. It hands out the bastion role's credentials from
/opt/box/credentials.json (written by the test from the emulator), or placeholders."""
import json
import os
import secrets
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE = os.environ.get("BOX_ROLE", "fargate-connect-fc-box")
TOKENS = set()


def credentials():
    try:
        with open("/opt/box/credentials.json") as f:
            return json.load(f)
    except FileNotFoundError:
        return {"AccessKeyId": "ASIABOXBOXBOXBOXBOX1", "SecretAccessKey": "box-secret", "Token": "box-token"}


class Imds(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        print(self.command, self.path, flush=True)

    def reply(self, code, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(400, "")
        token = secrets.token_hex(16)
        TOKENS.add(token)
        self.reply(200, token)

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") not in TOKENS:
            return self.reply(401, "")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self.reply(200, ROLE)
        if self.path == base + ROLE:
            creds = credentials()
            body = {
                "Code": "Success",
                "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "Type": "AWS-HMAC",
                "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds.get("Token", creds.get("SessionToken", "")),
                "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
            }
            return self.reply(200, json.dumps(body), "application/json")
        if self.path == "/latest/meta-data/instance-id":
            return self.reply(200, "i-0box")
        if self.path == "/latest/meta-data/placement/region":
            return self.reply(200, os.environ.get("BOX_REGION", "eu-west-1"))
        self.reply(404, "")


ThreadingHTTPServer(("169.254.169.254", 80), Imds).serve_forever()
