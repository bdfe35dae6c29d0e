"""Another reader of a stream, and the dataset export that shows what was uploaded since a time."""

import requests

from commsmining_emulator import Emulator


def test_another_reader_moves_the_one_position_every_reader_shares():
    with Emulator(comments=40) as emu:
        before = emu.next_uid("acme", "collections", "raw")
        taken = emu.consume("acme", "collections", "raw", 25)
        assert taken[0] == before and len(taken) == 25
        assert emu.stream_state("acme", "collections", "raw")["position"] == 25
        assert emu.next_uid("acme", "collections", "raw") == emu.world.dataset("acme", "collections").uid_at(25)
        # Over HTTP too, and a filtered stream is read past the comments its filter skips.
        uids = requests.post(emu.url + "/_emulator/streams/acme/collections/urgent-only/consume", json={"n": 2}).json()["uids"]
        assert len(uids) == 2 and set(uids) <= set(emu.consumed_uids("acme", "collections", "urgent-only"))


def test_the_dataset_export_lists_comments_in_upload_order_from_a_time():
    with Emulator(comments=40) as emu:
        ds = emu.world.dataset("acme", "collections")
        url = emu.url + "/api/v1/datasets/acme/collections/export"
        headers = {"Authorization": "Bearer " + emu.token}
        start = ds.comment(10)["created_at"]
        page = requests.post(url, json={"order_by": "created_at", "from": start, "limit": 3}, headers=headers).json()
        assert [c["comment"]["uid"] for c in page["comments"]] == [ds.uid_at(i) for i in (10, 11, 12)]
        rest = requests.post(url, json={"order_by": "created_at", "continuation": page["continuation"], "limit": 100},
                             headers=headers).json()
        assert rest["comments"][0]["comment"]["uid"] == ds.uid_at(13) and rest["continuation"] is None
        weak = emu.add_token(permissions=["View labels", "View sources"])
        refused = requests.post(url, json={}, headers={"Authorization": "Bearer " + weak})
        assert refused.status_code == 403 and "Export datasets" in refused.json()["message"]
