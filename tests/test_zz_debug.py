import pytest
from helpers import delivery, send_via_api, wait_for_callbacks
from notifier.worker import build_worker
from notifier import queues
from rq.registry import ScheduledJobRegistry

def test_debug(client, live, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "PAWPOST_RETRY_BASE_SECONDS", 0)
    clinic = factory.clinic("bandwidth")
    mid = send_via_api(client, factory.api_token(clinic), "+15551230060")
    for i in range(4):
        build_worker(live.app).work(burst=True, with_scheduler=True)
        wait_for_callbacks(live)
        d = delivery(mid, "sms")
        regs = {n: ScheduledJobRegistry(queue=queues.queue(n)).get_job_ids() for n in queues.QUEUE_ORDER}
        print(i, d.status, d.attempts, d.next_attempt_at, regs, [x.callbacks_finished for x in live.carrier.all_deliveries()])
    assert 0
