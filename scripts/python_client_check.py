"""HubSpot's official Python client, unchanged, against the callbridge sandbox.

Usage: python_client_check.py BASE_URL TOKEN
Exits non-zero on the first behaviour that differs from HubSpot's contract.
"""

import http.server
import json
import sys
import threading
import time
import urllib.request
import uuid

from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.calls import (
    AssociationSpec,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectInputForCreate as CallInput,
)
from hubspot.crm.properties import PropertyCreate
from hubspot.utils.signature import Signature

base_url, token = sys.argv[1], sys.argv[2]
# The client passes unknown settings to each generated API's Configuration: `host` points
# every API at the sandbox without changing the library.
client = HubSpot(access_token=token, host=base_url)

checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"FAIL: {what}")
        sys.exit(1)
    checks += 1
    print(f"ok: {what}")


run = uuid.uuid4().hex[:8]
email_a = f"ada.{run}@example.com"
email_b = f"grace.{run}@example.com"

created = client.crm.contacts.basic_api.create(
    SimplePublicObjectInputForCreate(properties={"email": email_a, "firstname": "Ada", "phone": "(415) 555-0100"})
)
check(created.id and created.properties["email"] == email_a, "create a contact")

by_email = client.crm.contacts.basic_api.get_by_id(email_a, id_property="email", properties=["firstname", "phone"])
check(by_email.id == created.id and by_email.properties["firstname"] == "Ada", "read it by email")

upserted = client.crm.contacts.batch_api.upsert(
    BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(id=email_a, id_property="email", properties={"lastname": "Lovelace"}),
            SimplePublicObjectBatchInputUpsert(
                id=email_b, id_property="email", properties={"firstname": "Grace", "mobilephone": "+1 212 555 0199"}
            ),
        ]
    )
)
flags = {r.id: r.new for r in upserted.results}
check(len(upserted.results) == 2 and flags.get(created.id) is False and sum(flags.values()) == 1, "batch-upsert by email")
grace_id = next(r.id for r in upserted.results if r.new)

found = client.crm.contacts.search_api.do_search(
    PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(filters=[Filter(property_name="phone", operator="IN", values=["4155550100", "2125550199"])]),
            FilterGroup(filters=[Filter(property_name="mobilephone", operator="IN", values=["4155550100", "2125550199"])]),
        ],
        properties=["email", "phone", "mobilephone"],
        limit=10,
    )
)
check(found.total == 2 and {r.id for r in found.results} == {created.id, grace_id}, "search with IN on phone")

merged = client.crm.contacts.basic_api.merge(PublicMergeInput(primary_object_id=created.id, object_id_to_merge=grace_id))
check(merged.id == created.id and email_b in (merged.properties.get("hs_additional_emails") or ""), "merge two contacts")

prop_name = f"callbridge_check_{run}"
prop = client.crm.properties.core_api.create(
    "contacts",
    PropertyCreate(name=prop_name, label="Check", type="string", field_type="text", group_name="contactinformation"),
)
check(prop.name == prop_name and prop.type == "string", "create a property")

call = client.crm.objects.calls.basic_api.create(
    CallInput(
        properties={"hs_timestamp": "2026-11-22T10:00:00.000Z", "hs_call_title": "Inbound call", "hs_call_body": "Asked for a demo"},
        associations=[
            PublicAssociationsForObject(
                to=PublicObjectId(id=created.id),
                types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=194)],
            )
        ],
    )
)
check(call.id and call.properties["hs_call_title"] == "Inbound call", "create a call associated to a contact")

page = client.crm.associations.v4.basic_api.get_page("calls", call.id, "contacts")
types = [t.type_id for r in page.results for t in r.association_types]
check([r.to_object_id for r in page.results] == [created.id] and 194 in types, "read the association back")

# The app's webhooks: set up through HubSpot's management API (developer key), delivered to a
# local receiver, and judged by the library's own v3 signature check.
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        received.append((self.headers.get("X-HubSpot-Signature-v3"), self.headers.get("X-HubSpot-Request-Timestamp"), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
target = f"http://127.0.0.1:{receiver.server_port}/webhooks/hubspot"


def manage(method, path, body):
    request = urllib.request.Request(
        f"{base_url}/webhooks/v3/3000100/{path}?hapikey=sandbox-developer-key",
        data=json.dumps(body).encode(), method=method, headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return answer.status


check(manage("PUT", "settings", {"targetUrl": target}) == 200, "set the webhook target URL")
check(manage("POST", "subscriptions", {"eventType": "contact.creation", "active": True}) == 201, "subscribe to contact creations")
hook_email = f"hook-{run}@example.com"
hooked = client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": hook_email}))
for _ in range(100):
    if received:
        break
    time.sleep(0.05)
check(received, "a contact creation is delivered")
signature, timestamp, body = received[0]
events = json.loads(body)
check(events[0]["subscriptionType"] == "contact.creation" and str(events[0]["objectId"]) == hooked.id, "the delivery names the contact")
check(Signature.is_valid(signature=signature, client_secret="sandbox-client-secret", request_body=body, http_uri=target,
                         signature_version="v3", timestamp=timestamp), "the delivery's v3 signature is valid")
receiver.shutdown()

# Exceed the tier's 10-second budget: HubSpot answers 429 with its body.
seen_429 = None
for _ in range(400):
    try:
        client.crm.contacts.basic_api.get_by_id(created.id)
    except ApiException as e:
        if e.status == 429:
            seen_429 = e
            break
        raise
check(seen_429 is not None, "a 429 once the 10-second budget is spent")
body = seen_429.body if isinstance(seen_429.body, str) else seen_429.body.decode()
check('"policyName":"TEN_SECONDLY_ROLLING"' in body.replace(" ", "") and '"errorType":"RATE_LIMIT"' in body.replace(" ", ""), "the 429 carries HubSpot's body")

print(f"{checks} passed, 0 failed")
