#!/usr/bin/python3
"""Many connections writing at once over several HTTP threads: every write
answered once, every event stored once, and a clean exit under the
sanitizers.  This caught HTTP threads sharing the main thread's h2o buffer
allocator (server/http.c thread_init_loop): it broke the heap within the
first 2,000 sends."""

import json
import threading

from axontest import Server, main
from roomutil import RoomTestCase, V3, q


class ConcurrentWrites(RoomTestCase):
    def test_sends_over_many_connections(self):
        s = Server(config={"threads": "2", "sync": "true"}).start()
        try:
            tok = s.register("writer", password="pw-concurrent")["access_token"]
            room = s.request("POST", V3 + "/createRoom", {}, token=tok).json["room_id"]
            ids, errors, lock = [], [], threading.Lock()

            def worker(w):
                c = s.connect()
                try:
                    for i in range(32):
                        c.request("PUT", V3 + "/rooms/%s/send/m.room.message/w%d-%d" % (q(room), w, i),
                                  body=json.dumps({"msgtype": "m.text", "body": "%d/%d" % (w, i)}),
                                  headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
                        r = c.getresponse()
                        body = json.loads(r.read())
                        with lock:
                            (ids if r.status == 200 else errors).append(body.get("event_id", body))
                finally:
                    c.close()

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(64)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(len(set(ids)), 64 * 32)
            # every one stored, once, in the room's timeline
            seen, frm = set(), None
            while True:
                path = V3 + "/rooms/%s/messages?dir=b&limit=1000" % q(room) + ("&from=" + frm if frm else "")
                r = s.request("GET", path, token=tok).json
                seen |= {e["event_id"] for e in r["chunk"] if e["type"] == "m.room.message"}
                frm = r.get("end")
                if frm is None:
                    break
            self.assertEqual(seen, set(ids))
            s.stop()  # exit status 0 and no sanitizer report
        finally:
            if s.proc is not None:
                s.stop(check=False)
            s.cleanup()


if __name__ == "__main__":
    main()
