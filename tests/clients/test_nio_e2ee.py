#!/usr/bin/python3
"""End-to-end encryption with a real client: two matrix-nio clients
(Debian's python3-matrix-nio with python3-olm) publish their keys, learn
each other's devices through /keys/query, trust them, and exchange
messages in an encrypted room.  Each decrypts what the other sent, which
needs every E2EE piece of the server: key upload and claim, device lists,
to-device delivery of the olm-encrypted room keys, and /sync."""

import asyncio
import json
import os
import shutil
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
from axontest import Server, main, unique  # noqa: E402

try:
    import nio
    import olm  # noqa: F401  (nio's encryption needs it)
except ImportError:  # pragma: no cover
    nio = None

PASSWORD = "nio-e2ee-password"


@unittest.skipIf(nio is None, "python3-matrix-nio or python3-olm is not installed")
class NioE2ee(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            cls.server.cleanup()

    def setUp(self):
        self.stores = tempfile.mkdtemp(prefix="axon-nio-")

    def tearDown(self):
        shutil.rmtree(self.stores, ignore_errors=True)

    def test_two_clients_exchange_encrypted_messages(self):
        asyncio.run(self.scenario())

    async def client(self, name):
        path = os.path.join(self.stores, name)
        os.makedirs(path)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        c = nio.AsyncClient(self.server.base, name, store_path=path, config=config)
        resp = await c.register(name, PASSWORD, device_name=name + "'s laptop")
        self.assertIsInstance(resp, nio.RegisterResponse, resp)
        self.assertIsNotNone(c.olm, "nio did not load its olm account")
        return c

    async def step(self, c, timeout=0):
        """One sync plus the key maintenance nio's sync_forever would do."""
        r = await c.sync(timeout=timeout)
        self.assertIsInstance(r, nio.SyncResponse, r)
        if c.should_upload_keys:
            self.assertIsInstance(await c.keys_upload(), nio.KeysUploadResponse)
        if c.should_query_keys:
            self.assertIsInstance(await c.keys_query(), nio.KeysQueryResponse)
        if c.should_claim_keys:
            self.assertIsInstance(await c.keys_claim(c.get_users_for_key_claiming()), nio.KeysClaimResponse)
        for resp in await c.send_to_device_messages():
            self.assertIsInstance(resp, nio.ToDeviceResponse, resp)
        return r

    async def trust(self, c, other):
        """Verifies 'other''s devices as a user would by comparing fingerprints out of band."""
        devices = list(c.device_store.active_user_devices(other.user_id))
        self.assertEqual([d.id for d in devices], [other.device_id])
        # the keys the server handed out are the other client's real identity keys
        self.assertEqual(devices[0].ed25519, other.olm.account.identity_keys["ed25519"])
        self.assertEqual(devices[0].curve25519, other.olm.account.identity_keys["curve25519"])
        for d in devices:
            c.verify_device(d)

    async def receive(self, c, room_id, body, sender):
        """Syncs until 'body' from 'sender' arrives decrypted in 'room_id'."""
        for _ in range(15):
            r = await self.step(c, timeout=2000)
            room = r.rooms.join.get(room_id)
            for ev in room.timeline.events if room else []:
                if isinstance(ev, nio.MegolmEvent):
                    self.fail("%s could not decrypt %s" % (c.user_id, ev.event_id))
                if isinstance(ev, nio.RoomMessageText) and ev.body == body:
                    self.assertEqual(ev.sender, sender)
                    self.assertTrue(ev.decrypted, "the message did not arrive encrypted")
                    self.assertTrue(ev.verified, "the sender's device is not trusted")
                    return ev
        self.fail("%s never received %r" % (c.user_id, body))

    def raw_messages(self, token, room_id):
        r = self.server.request("GET", "/_matrix/client/v3/rooms/%s/messages?dir=b&limit=50" %
                                urllib.parse.quote(room_id, safe=""), token=token)
        self.assertEqual(r.status, 200, r)
        return r.json["chunk"]

    async def scenario(self):
        alice = await self.client(unique("nioalice"))
        bob = await self.client(unique("niobob"))
        try:
            for c in (alice, bob):
                await self.step(c)
                self.assertFalse(c.should_upload_keys, "keys were not accepted")

            # an encrypted room, bob invited and joined
            encryption = {"type": "m.room.encryption", "state_key": "",
                          "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            created = await alice.room_create(invite=[bob.user_id], initial_state=[encryption])
            self.assertIsInstance(created, nio.RoomCreateResponse, created)
            room_id = created.room_id
            await self.step(alice)
            await self.step(bob)
            self.assertIsInstance(await bob.join(room_id), nio.JoinResponse)
            await self.step(bob)
            await self.step(alice)
            self.assertTrue(alice.rooms[room_id].encrypted)
            self.assertTrue(bob.rooms[room_id].encrypted)

            # each learns the other's device from the server, and trusts it
            for c in (alice, bob):
                await self.step(c)
            await self.trust(alice, bob)
            await self.trust(bob, alice)

            # alice -> bob: the megolm session travels olm-encrypted through to-device
            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            await self.receive(bob, room_id, "hello bob", alice.user_id)

            # bob -> alice, on bob's own session
            sent = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            await self.receive(alice, room_id, "hi alice", bob.user_id)

            # the server only ever had ciphertext
            chunk = self.raw_messages(alice.access_token, room_id)
            encrypted = [e for e in chunk if e["type"] == "m.room.encrypted"]
            self.assertEqual(len(encrypted), 2)
            text = json.dumps(chunk)
            self.assertNotIn("hello bob", text)
            self.assertNotIn("hi alice", text)
            self.assertTrue(all(e["content"]["algorithm"] == "m.megolm.v1.aes-sha2" for e in encrypted))
        finally:
            await alice.close()
            await bob.close()


if __name__ == "__main__":
    main()
