from tests.test_pages import *  # noqa

async def test_dbg(client, admin_key, ingest_key):
    client.app.debug = True
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    sent = await client.post("/v1/events/batch", headers=auth(ingest_key),
                             json={"events": [event(quantity=7)]})
    print("SENT", sent.status_code, sent.text[:300])
    portal = client.app.state.portal
    await portal.catalog._reload()
