"""The loopback receivers themselves: restart on the same port, failure injection, duplicates."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request

import pytest

from ai_assets_tests.doubles import SmtpReceiver, WebhookReceiver


def _post(url: str, key: str, body: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Idempotency-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _mail(port: int, message_id: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.sendmail("a@bank.example", ["b@example.org"],
                      f"Message-ID: {message_id}\r\nSubject: s\r\n\r\nbody\r\n".encode())


def test_webhook_receiver_records_fails_on_request_and_restarts_on_its_port():
    receiver = WebhookReceiver()
    with pytest.raises(RuntimeError):
        _ = receiver.url  # no port before the first start
    with receiver:
        port = receiver.port
        receiver.fail_next(2, status=503, body="busy", headers={"Retry-After": "3"})
        assert [_post(receiver.url, "k1", {"n": 1}) for _ in range(3)] == [503, 503, 200]
        assert _post(receiver.url, "k2", {"n": 2}) == 200
        assert _post(receiver.url, "k1", {"n": 1}) == 200
    with pytest.raises(urllib.error.URLError):
        _post(f"http://127.0.0.1:{port}/hooks", "k3", {})
    receiver.start()
    try:
        assert receiver.port == port
        assert _post(receiver.url, "k3", {"n": 3}) == 200
    finally:
        receiver.stop()
    assert [r.status for r in receiver.requests] == [503, 503, 200, 200, 200, 200]
    assert receiver.keys() == ["k1", "k2", "k1", "k3"]
    assert receiver.events[1].json == {"n": 2}
    assert receiver.duplicates() == {"k1": 2}


def test_smtp_receiver_records_refuses_on_request_and_restarts_on_its_port():
    receiver = SmtpReceiver()
    with pytest.raises(RuntimeError):
        _ = receiver.port
    with receiver:
        port = receiver.port
        _mail(port, "<a@x>")
        receiver.reject_next(1, reply="450 4.2.1 busy")
        with pytest.raises(smtplib.SMTPDataError):
            _mail(port, "<b@x>")
        _mail(port, "<a@x>")
    assert not receiver.running
    with pytest.raises(ConnectionRefusedError):
        _mail(port, "<c@x>")
    with receiver.start():
        assert receiver.port == port
        _mail(port, "<c@x>")
    assert receiver.message_ids() == ["<a@x>", "<a@x>", "<c@x>"]
    assert receiver.refused == 1 and receiver.duplicates() == {"<a@x>": 2}
    assert receiver.messages[0].body == "body\n" and receiver.messages[0].to == ("b@example.org",)
    receiver.clear()
    assert receiver.messages == []
