#!/usr/bin/python3
"""A real client, matrix-nio (Debian's python3-matrix-nio), through the
account cycle: register, login, whoami, profile, devices, logout."""

import asyncio
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
from axontest import Server, main, unique  # noqa: E402

try:
    import nio
    from nio.responses import WhoamiError, WhoamiResponse
except ImportError:  # pragma: no cover
    nio = None


@unittest.skipIf(nio is None, "python3-matrix-nio is not installed")
class NioAccounts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            cls.server.cleanup()

    def test_register_login_whoami_logout(self):
        asyncio.run(self.cycle())

    async def cycle(self):
        name = unique("nio")
        client = nio.AsyncClient(self.server.base, name)
        try:
            resp = await client.register(name, "nio-password", device_name="nio test")
            self.assertIsInstance(resp, nio.RegisterResponse, resp)
            self.assertEqual(resp.user_id, "@%s:%s" % (name, self.server.server_name))
            await client.logout()

            second = nio.AsyncClient(self.server.base, "@%s:%s" % (name, self.server.server_name))
            try:
                login = await second.login("nio-password", device_name="second")
                self.assertIsInstance(login, nio.LoginResponse, login)
                who = await second.whoami()
                self.assertIsInstance(who, WhoamiResponse, who)
                self.assertEqual(who.user_id, login.user_id)

                r = await second.set_displayname("Nio Person")
                self.assertIsInstance(r, nio.ProfileSetDisplayNameResponse, r)
                prof = await second.get_profile()
                self.assertIsInstance(prof, nio.ProfileGetResponse, prof)
                self.assertEqual(prof.displayname, "Nio Person")

                devices = await second.devices()
                self.assertIsInstance(devices, nio.DevicesResponse, devices)
                self.assertEqual([d.id for d in devices.devices], [login.device_id])

                bad = nio.AsyncClient(self.server.base, name)
                try:
                    wrong = await bad.login("not-the-password")
                    self.assertIsInstance(wrong, nio.LoginError)
                    self.assertEqual(wrong.status_code, "M_FORBIDDEN")
                finally:
                    await bad.close()

                out = await second.logout()
                self.assertIsInstance(out, nio.LogoutResponse, out)
                second.access_token = login.access_token
                after = await second.whoami()
                self.assertIsInstance(after, WhoamiError)
                self.assertEqual(after.status_code, "M_UNKNOWN_TOKEN")
            finally:
                await second.close()
        finally:
            await client.close()


if __name__ == "__main__":
    main()
