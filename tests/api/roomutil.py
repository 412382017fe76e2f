"""Helpers for room tests: users, rooms, sends, syncs."""

import itertools
import json
import re
import time
import urllib.parse

from axontest import AxonTestCase, unique

V3 = "/_matrix/client/v3"
_txn = itertools.count(1)


def q(s):
    """Percent-encodes an identifier for a path segment."""
    return urllib.parse.quote(s, safe="")


class RoomTestCase(AxonTestCase):
    def metric(self, name):
        """A gauge or counter without labels from /metrics."""
        text = self.req("GET", "/metrics").raw.decode()
        return int(re.search(r"^%s (\d+)$" % re.escape(name), text, re.M).group(1))

    def wait_metric(self, done, what, timeout=10):
        """Until done() holds (reading metrics): for the writer's batched indexes to catch up."""
        deadline = time.monotonic() + timeout
        while not done():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.05)

    def user(self, name=None):
        u = self.server.register(name or unique())
        return u["user_id"], u["access_token"]

    def create_room(self, token, **body):
        r = self.req("POST", V3 + "/createRoom", token=token, body=body)
        self.assertEqual(r.status, 200, r)
        return r.json["room_id"]

    def send(self, token, room, body=None, type_="m.room.message", expect=200):
        r = self.req("PUT", V3 + "/rooms/%s/send/%s/%d" % (q(room), type_, next(_txn)), token=token,
                     body=body if body is not None else {"msgtype": "m.text", "body": "hello"})
        self.assertEqual(r.status, expect, r)
        return r.json.get("event_id") if r.json else None

    def state(self, token, room, type_, content, state_key="", expect=200):
        r = self.req("PUT", V3 + "/rooms/%s/state/%s/%s" % (q(room), type_, q(state_key)), token=token, body=content)
        self.assertEqual(r.status, expect, r)
        return r

    def join(self, token, room, expect=200):
        r = self.req("POST", V3 + "/join/" + q(room), token=token, body={})
        self.assertEqual(r.status, expect, r)
        return r

    def invite(self, token, room, user_id, expect=200):
        r = self.req("POST", V3 + "/rooms/%s/invite" % q(room), token=token, body={"user_id": user_id})
        self.assertEqual(r.status, expect, r)
        return r

    def leave(self, token, room, expect=200):
        r = self.req("POST", V3 + "/rooms/%s/leave" % q(room), token=token, body={})
        self.assertEqual(r.status, expect, r)
        return r

    def sync(self, token, since=None, timeout=0, filter_=None, spec=True, conn=None, **params):
        # presence is tested on its own; elsewhere it would only add noise to what a sync returns
        qs = {"timeout": str(timeout), "set_presence": params.pop("set_presence", "offline")}
        if since:
            qs["since"] = since
        if filter_ is not None:
            qs["filter"] = filter_ if isinstance(filter_, str) else json.dumps(filter_)
        qs.update(params)
        r = self.req("GET", V3 + "/sync?" + urllib.parse.urlencode(qs), token=token, conn=conn)
        self.assertEqual(r.status, 200, r)
        if spec:
            self.assertSpec("GET", V3 + "/sync", r)
        return r.json

    def timeline(self, sync, room):
        return sync.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])

    def messages(self, token, room, **params):
        r = self.req("GET", V3 + "/rooms/%s/messages?%s" % (q(room), urllib.parse.urlencode(params)), token=token)
        self.assertEqual(r.status, 200, r)
        return r.json
