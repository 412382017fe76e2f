/*
 * schema.h -- THE table of LMDB named databases, their key layout and the
 * schema version.  Nothing else in axon names a database: db.c opens every
 * row below at start-up and storage/<area>.c reaches them by AX_DBI_<name>.
 *
 * Notation: "be64" is a big-endian u64 (so keys sort numerically), "0x00"
 * a separator byte that cannot occur in Matrix identifiers, "str" raw UTF-8
 * without terminator, "json" a compact JSON document.  Names follow
 * <key>_<value> (STYLE B2).
 *
 * Changing a layout means bumping AX_SCHEMA_VERSION and adding a migration
 * to the table in db.c.
 */
#ifndef AX_STORAGE_SCHEMA_H
#define AX_STORAGE_SCHEMA_H

/* 2: roomid_pos_member; 3: thread summaries; 4: search index; 5: posuser_notif; 6: posuser_notif in
 * buckets; 7: the state group in the event record */
#define AX_SCHEMA_VERSION 7

/*
 * meta                  key = str name; value = per name: "schema_version" -> be64,
 *                       "stream_pos" -> be64 (last position handed out by the writer),
 *                       "search_pos" -> be64 (term_roompos_event holds every timeline event up to it)
 * accesstoken_session   key = sha256(access token) (32 bytes);
 *                       value = be64 expires_ms (0: never) | user_id 0x00 | device_id 0x00
 * refreshtoken_session  key = sha256(refresh token);
 *                       value = json {user_id, device_id, prev?: hex sha256 of the token it replaced}
 * logintoken_user       key = sha256(login token for m.login.token); value = be64 expires_ms | user_id
 * userid_account        key = user_id; value = json {password_hash|null, admin, deactivated,
 *                       created_ts, deactivated_ts?}.  Never deleted: a user ID is never handed out twice.
 * userid_profile        key = user_id; value = json profile {displayname?, avatar_url?, m.tz?, custom...}
 * userdevice_device     key = user_id 0x00 device_id; value = json {display_name?, created_ts,
 *                       last_seen_ts?, last_seen_ip?, access?: hex sha256, refresh?: hex sha256}
 * uiasession_session    key = UIA session id; value = json {fingerprint: "METHOD /path", user_id?,
 *                       created_ts, completed: [stage], token?}
 * regtoken_token        key = registration token; value = json {uses_allowed|null, pending,
 *                       completed, expiry_time|null}
 *
 * Rooms and events (storage/rooms.c).  "pos" is the stream position the writer gave the event.
 * eventid_event         key = event_id; value = be64 pos (0: outlier) | u8 flags (AX_EVENT_F_*, and 0x80:
 *                       a group follows) | [be64 group of the state after the event] | room_id 0x00 |
 *                       event json (the PDU; its "unsigned" holds server-local data: prev_content,
 *                       replaces_state, redacted_because, io.axon.txn {device, txn_id})
 * roomid_pos_eventid    key = room_id 0x00 be64 pos; value = event_id           (a room's timeline)
 * pos_roomevent         key = be64 pos; value = room_id 0x00 event_id           (every timeline, in order)
 * roomid_room           key = room_id; value = json {room_version, creators[], created_ts, last_pos,
 *                       depth, state_group, federate}
 * roomid_state          key = room_id 0x00 type 0x00 state_key; value = event_id  (current state)
 * roomid_extremity      key = room_id 0x00 event_id; value = ""                 (forward extremities)
 * stategroup_state      key = be64 group; value = json {prev: group (0: full snapshot), chain: n,
 *                       delta: {type: {state_key: event_id | null}}}
 * eventid_stategroup    key = event_id; value = be64 group of the state after the event (its DAG state):
 *                       records written before schema 7 only (later ones carry it in eventid_event)
 * roomdepth_backfill    key = room_id 0x00 be64 depth event_id; value = ""  (history older than this server's
 *                       first event of the room, fetched from other servers: outliers shown by /messages)
 * roompos_stategroup    key = room_id 0x00 be64 pos; value = be64 group of the room's current state
 *                       after the timeline event at pos, written only where that differs from the
 *                       event's own state (federated forks resolved by state resolution)
 * roomuser_pos_membership  key = room_id 0x00 user_id 0x00 be64 pos; value = membership
 *                       (every membership change, for "membership at position")
 * roomid_pos_member     key = room_id 0x00 be64 pos; value = user_id 0x00 membership
 *                       (the same changes in room order: who joined or left since a sync token)
 * userid_membership     key = user_id 0x00 room_id; value = json {membership, event_id, pos}
 * roomid_members        key = room_id 0x00 user_id; value = membership          (current)
 * roomid_pos_visibility key = room_id 0x00 be64 pos; value = history_visibility   (every change)
 * txn_eventid           key = user_id 0x00 device_id 0x00 txn_id; value = event_id
 * alias_roomid          key = #alias:server; value = json {room_id, creator}
 * roomid_alias          key = room_id 0x00 #alias:server; value = ""
 * publicroom_roomid     key = room_id; value = ""                               (room directory)
 * relation_child        key = parent_event_id 0x00 rel_type 0x00 be64 pos; value = child event_id
 * roomid_pos_threadroot key = room_id 0x00 be64 pos of the thread's latest event; value = root event_id
 * threadroot_pos        key = root event_id; value = be64 pos of its latest event (to move the entry above)
 * threadroot_summary    key = root event_id; value = json {count, latest}   (replies of a thread)
 * threadroot_user       key = root event_id 0x00 user_id; value = ""          (who replied in it)
 * term_roompos_event    key = search term 0x00 room_id 0x00 be64 pos; value = be64 pos, repeated, newest first,
 *                       the key's the first (full-text index: the timeline events whose words include
 *                       the term, a record per batch the indexer wrote, behind the timeline: core/search.c)
 *
 * Per-user data (storage/userdata.c).
 * userroomtype_accountdata  key = user_id 0x00 room_id ("" for global) 0x00 type;
 *                       value = be64 pos | json content
 * userpos_accountdata   key = user_id 0x00 be64 pos; value = room_id 0x00 type  (changes, for /sync)
 * userid_filter         key = user_id 0x00 filter_id; value = json filter
 * roomtypeuser_receipt  key = room_id 0x00 receipt_type 0x00 user_id 0x00 thread ("" unthreaded);
 *                       value = json {event_id, ts, pos, thread_id?}
 * roompos_receipt       key = room_id 0x00 be64 pos; value = receipt_type 0x00 user_id 0x00 thread
 *                       (changes, for /sync)
 * userid_presence       key = user_id; value = json {presence, status_msg?, last_active_ts, pos}
 * pos_presence          key = be64 pos; value = user_id                 (changes, for /sync)
 *
 * Push notifications (storage/push.c).  Push rules are the m.push_rules account data above.
 * userroomthread_unread key = user_id 0x00 room_id 0x00 thread root event_id ("" = main timeline);
 *                       value = be64 read_pos | be64 last_pos (newest notification) |
 *                       be32 notification_count | be32 highlight_count
 * userpos_notif         key = user_id 0x00 be64 pos of the event; value = u8 flags (1 = highlight) |
 *                       be64 ts | room_id 0x00 thread 0x00 actions json      (GET /notifications)
 * posuser_notif         key = u8 bucket (ax_db_notif_bucket of the user) be64 pos user_id; value = as
 *                       userpos_notif's  (notifications not yet moved into userpos_notif, oldest first,
 *                       a bucket at a time: storage/push.c)
 * userapppushkey_pusher key = user_id 0x00 app_id 0x00 pushkey; value = json pusher {kind, app_id,
 *                       pushkey, app_display_name, device_display_name, profile_tag?, lang, data,
 *                       device_id?, pushkey_ts (seconds)}
 * apppushkey_user       key = app_id 0x00 pushkey 0x00 user_id; value = ""  (other users' pushers of a pushkey)
 * pospusher_push        key = be64 pos | user_id 0x00 app_id 0x00 pushkey; value = json {event_id?, room_id?,
 *                       prio, tweaks?, ts}  (the push queue: one entry per notification and pusher, deleted
 *                       once the gateway took it; pos is the event's, or the receipt's for badge updates)
 * meta "push_gen"       bumped whenever push rules or pushers change (core/push.c reloads its caches)
 * Media repository (storage/media.c).  The bytes live in files under data_dir/media named by their
 * SHA-256 (core/media.c); these tables hold what points at them.
 * mediaid_media         key = media_id; value = json {uploader, created_ts, and either
 *                       pending: true, expires_ts (an ID from /create awaiting its upload) or
 *                       sha256 (hex), size, content_type, filename?}
 * userid_media          key = uploader 0x00 be64 created_ts media_id; value = ""  (a user's media, oldest first)
 * userpending_mediaid   key = uploader 0x00 media_id; value = be64 expires_ts    (pending IDs per user)
 * expiry_mediaid        key = be64 expires_ts media_id; value = ""               (pending IDs by expiry)
 * sha256_refs           key = sha256 (32 bytes); value = be64 number of media IDs with that content
 *
 * End-to-end encryption (storage/e2ee.c).  The server only stores and hands out public keys and
 * signatures; "dev" below is user_id 0x00 device_id.
 * userdevice_keys       key = dev; value = json device_keys as uploaded (signatures by the user's
 *                       self-signing key merged in)
 * userdevicealgo_otk    key = dev 0x00 algorithm 0x00 key_id; value = be64 seq | json key
 * otk_order             key = dev 0x00 algorithm 0x00 be64 seq key_id; value = ""   (oldest first:
 *                       one-time keys are claimed in upload order; seq counts uploads, meta "otk_seq")
 * userdevicealgo_fallback  key = dev 0x00 algorithm; value = json {key_id, key, used}
 * userusage_crosssigning   key = user_id 0x00 usage ("master", "self_signing", "user_signing");
 *                       value = json cross-signing key (signatures by the user's own devices merged in)
 * keysig_signatures     key = target user_id 0x00 target key id (master public key) 0x00 signer
 *                       user_id; value = json {signer key id: signature}   (user-signing signatures
 *                       of other users' master keys: only their signer sees them)
 * pos_devicelist        key = be64 pos; value = user_id 0x00 observer   (device-list changes, for
 *                       /sync and /keys/changes; observer "" = everyone sharing a room with user_id,
 *                       else only that user)
 * devicelist_pos        key = user_id 0x00 observer; value = be64 pos   (moves the entry above, so
 *                       the change index holds one entry per user and observer)
 * dev_pos_todevice      key = dev 0x00 be64 pos; value = json {sender, type, content}  (a device's
 *                       inbox; deleted once a /sync with a later since acknowledges them)
 * todevicetxn_ts        key = dev 0x00 txn_id; value = be64 ts   (sendToDevice idempotency)
 * userid_dehydrated     key = user_id; value = json {device_id, device_data}   (MSC3814: the user's
 *                       dehydrated device, a device without tokens whose inbox fills while offline)
 *
 * Server-side key backup (storage/key_backup.c).
 * userversion_backup    key = user_id 0x00 be64 version; value = json {algorithm, auth_data, etag,
 *                       count, deleted?}   (deleted versions stay, so a number is never reused)
 * backup_roomkey        key = user_id 0x00 be64 version room_id 0x00 session_id; value = json
 *                       KeyBackupData {first_message_index, forwarded_count, is_verified, session_data}
 *
 * Transactions other servers sent (storage/fedtxn.c), kept a day to answer retries the same way.
 * origintxn_answer      key = origin 0x00 txn_id; value = be64 received_ms | json answer
 * ts_origintxn          key = be64 received_ms origin 0x00 txn_id; value = ""  (oldest first, for pruning)
 *
 * Federation (storage/federation.c).
 * serverkeyid_key       key = server_name 0x00 key_id; value = json {key: unpadded base64 ed25519 public key,
 *                       valid_until_ts, expired_ts? (listed under old_verify_keys), fetched_ts, from: the server
 *                       that served it (itself or a notary), doc: the key document as its owner signed it}
 * keyid_oldkey          key = key_id of one of our own former signing keys; value = json {key, expired_ts}
 *                       (served under old_verify_keys; written by `axon admin rotate-key`)
 * destination_state     key = server_name; value = json {failures, retry_at_ms, first_seen_ts,
 *                       last_success_ts?, last_failure_ts?, last_error?, reset_ts?}  (outbound backoff per
 *                       destination; reset_ts: when `axon admin federation reset` last cleared it)
 *
 * The outbound federation queue (storage/fedqueue.c; the sender is federation/sender.c).
 * destseq_outbound      key = destination 0x00 be64 seq; value = u8 kind | payload: 'P' room_id 0x00 event_id
 *                       (a PDU, read from eventid_event when sent) or 'E' json {edu_type, content}.  seq counts
 *                       per destination in commit order; an item is deleted once the destination
 *                       acknowledged the transaction that carried it
 * destination_queue     key = destination; value = be64 acked | be64 last | be64 depth | json pending?
 *                       (acked: every seq <= acked was delivered; last: the highest seq handed out; depth:
 *                       items queued; pending: {txn_id, upto} of the transaction in flight, so a retry after
 *                       a restart reuses its txnId for the same items)
 * userid_devicestream   key = user_id; value = be64 stream_id of the last m.device_list_update queued for the
 *                       user (the next update's prev_id)
 */
/* clang-format off */
#define AX_SCHEMA_DBS(X) \
    X(meta, 0) \
    X(accesstoken_session, 0) \
    X(refreshtoken_session, 0) \
    X(logintoken_user, 0) \
    X(userid_account, 0) \
    X(userid_profile, 0) \
    X(userdevice_device, 0) \
    X(uiasession_session, 0) \
    X(regtoken_token, 0) \
    X(eventid_event, 0) \
    X(roomid_pos_eventid, 0) \
    X(pos_roomevent, 0) \
    X(roomid_room, 0) \
    X(roomid_state, 0) \
    X(roomid_extremity, 0) \
    X(stategroup_state, 0) \
    X(eventid_stategroup, 0) \
    X(roompos_stategroup, 0) \
    X(roomdepth_backfill, 0) \
    X(roomuser_pos_membership, 0) \
    X(userid_membership, 0) \
    X(roomid_members, 0) \
    X(roomid_pos_visibility, 0) \
    X(txn_eventid, 0) \
    X(alias_roomid, 0) \
    X(roomid_alias, 0) \
    X(publicroom_roomid, 0) \
    X(relation_child, 0) \
    X(roomid_pos_threadroot, 0) \
    X(threadroot_pos, 0) \
    X(threadroot_summary, 0) \
    X(threadroot_user, 0) \
    X(term_roompos_event, 0) \
    X(userroomtype_accountdata, 0) \
    X(userpos_accountdata, 0) \
    X(userid_filter, 0) \
    X(roomtypeuser_receipt, 0) \
    X(roompos_receipt, 0) \
    X(userid_presence, 0) \
    X(pos_presence, 0) \
    X(userroomthread_unread, 0) \
    X(userpos_notif, 0) \
    X(posuser_notif, 0) \
    X(userapppushkey_pusher, 0) \
    X(apppushkey_user, 0) \
    X(pospusher_push, 0) \
    X(mediaid_media, 0) \
    X(userid_media, 0) \
    X(userpending_mediaid, 0) \
    X(expiry_mediaid, 0) \
    X(sha256_refs, 0) \
    X(roomid_pos_member, 0) \
    X(userdevice_keys, 0) \
    X(userdevicealgo_otk, 0) \
    X(otk_order, 0) \
    X(userdevicealgo_fallback, 0) \
    X(userusage_crosssigning, 0) \
    X(keysig_signatures, 0) \
    X(pos_devicelist, 0) \
    X(devicelist_pos, 0) \
    X(dev_pos_todevice, 0) \
    X(todevicetxn_ts, 0) \
    X(userid_dehydrated, 0) \
    X(userversion_backup, 0) \
    X(backup_roomkey, 0) \
    X(serverkeyid_key, 0) \
    X(keyid_oldkey, 0) \
    X(destination_state, 0) \
    X(destseq_outbound, 0) \
    X(destination_queue, 0) \
    X(userid_devicestream, 0) \
    X(origintxn_answer, 0) \
    X(ts_origintxn, 0)
/* clang-format on */

#endif
